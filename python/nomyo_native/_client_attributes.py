"""The attributes a client shows (those of nomyo 0.2.9's, and a few more), read from and
written to the parts that now hold them (retry policy, key lifecycle and ring, attestation
trust, the cached server key)."""

from __future__ import annotations

import dataclasses
from typing import Any

from nomyo_native import _core
from nomyo_native._keyring import KeyRing
from nomyo_native._keys import KeyLifecycle
from nomyo_native._retry import RetryPolicy
from nomyo_native._trust import AttestationTrust

__all__ = ["ClientAttributes"]


class ClientAttributes:
    """The attributes nomyo 0.2.9's client has (and a few more), read from the parts that now
    hold them."""

    _retry: RetryPolicy
    _lifecycle: KeyLifecycle
    _attestation: AttestationTrust
    _keys: KeyRing
    _server_key: _core.ServerPublicKey | None

    # Settable, as they were plain attributes: a later assignment applies to later requests.

    @property
    def max_retries(self) -> int:
        return self._retry.max_retries

    @max_retries.setter
    def max_retries(self, retries: int) -> None:
        self._retry = dataclasses.replace(self._retry, max_retries=retries)

    @property
    def key_size(self) -> int:
        return self._lifecycle.key_size

    @key_size.setter
    def key_size(self, bits: int) -> None:
        self._lifecycle.key_size = bits

    @property
    def pcr_baseline(self) -> dict[str, Any] | None:
        return self._attestation.pcr_baseline

    @pcr_baseline.setter
    def pcr_baseline(self, baseline: dict[str, Any] | None) -> None:
        self._attestation.pcr_baseline = baseline

    @property
    def trusted_aik(self) -> Any:
        return self._attestation.trusted_aik

    @trusted_aik.setter
    def trusted_aik(self, aik: Any) -> None:
        self._attestation.trusted_aik = aik

    @property
    def private_key(self) -> _core.ClientKeyPair | None:
        """The current key pair handle (opaque: the private key never leaves the core)."""
        return self._keys.current

    @property
    def public_key_pem(self) -> str | None:
        current = self._keys.current
        return current.public_key_pem if current is not None else None

    @property
    def client_key_fingerprint(self) -> str | None:
        current = self._keys.current
        return current.fingerprint if current is not None else None

    @property
    def server_key_fingerprint(self) -> str | None:
        """Fingerprint of the cached server key (None before the first fetch)."""
        return self._server_key.fingerprint if self._server_key is not None else None
