"""Real TPM quotes for the attestation tests.

Quotes come from the local endpoint's own producer (``nomyo_native.server.tpm``) on the
session's one swtpm (``swtpm_quoter`` in tests/conftest.py), so there is one quote producer in
the repository and these tests verify exactly what the endpoint sends.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("tpm2_pytss")


@pytest.fixture(scope="session")
def tpm_quoter(swtpm_quoter: Any) -> Any:
    return swtpm_quoter
