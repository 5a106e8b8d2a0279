"""tpm2-pytss (the TPM software stack) loaded on first use, and the error every TPM module
raises: the TPM needs the ``tpm`` extra only when one is actually used."""

from __future__ import annotations

from typing import Any


class TpmError(Exception):
    """The TPM could not be started, reached or used."""


def load_tss() -> Any:
    """The ``tpm2_pytss`` module (untyped), or TpmError naming the extra to install."""
    try:
        import tpm2_pytss
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise TpmError(
            "TPM support needs tpm2-pytss: pip install 'nomyo-native[server,tpm]'"
        ) from exc
    return tpm2_pytss
