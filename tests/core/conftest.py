"""Fixtures of the core's envelope tests: a client key pair per module and its public half as
pyca/cryptography holds it (the peer that seals responses to it)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nomyo_native import _core


@pytest.fixture(scope="module")
def keypair() -> _core.ClientKeyPair:
    return _core.ClientKeyPair.generate(2048)


@pytest.fixture(scope="module")
def client_public(keypair: _core.ClientKeyPair) -> rsa.RSAPublicKey:
    public = serialization.load_pem_public_key(keypair.public_key_pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    return public
