"""Keys shared by the bad-input suites (2048-bit: key size is not what is under test here)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from nomyo_native import _core


@pytest.fixture(scope="session")
def keypair() -> _core.ClientKeyPair:
    return _core.ClientKeyPair.generate(2048)


@pytest.fixture(scope="session")
def client_public(keypair: _core.ClientKeyPair) -> rsa.RSAPublicKey:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(keypair.public_key_pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    return key
