"""Real TPM quotes for the attestation tests: one swtpm for the whole session.

Quotes come from the local endpoint's own producer (``nomyo_native.server.tpm``), so there is
one quote producer in the repository and these tests verify exactly what the endpoint sends.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

pytest.importorskip("tpm2_pytss")

from nomyo_native.server.tpm import SwtpmProcess, TpmQuoter


@pytest.fixture(scope="session")
def tpm_quoter() -> Iterator[TpmQuoter]:
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm is not installed (apt-get install swtpm swtpm-tools)")
    with SwtpmProcess() as swtpm, TpmQuoter(swtpm.tcti) as quoter:
        yield quoter
