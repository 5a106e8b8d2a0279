"""Fixtures of the server suite: cheap 2048-bit client keys and wire clients."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from nomyo_native.server import RunningServer

from .wire import WireClient


@pytest.fixture(scope="session")
def client_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ssl_context_for(endpoint: RunningServer) -> ssl.SSLContext | bool:
    if endpoint.ca_path is None:
        return True
    return ssl.create_default_context(cafile=str(endpoint.ca_path))


@pytest.fixture
def wire_for(client_key: rsa.RSAPrivateKey) -> Callable[..., WireClient]:
    def make(endpoint: RunningServer, **options: object) -> WireClient:
        options.setdefault("client_key", client_key)
        return WireClient(
            base_url=endpoint.base_url,
            server_public_pem=endpoint.public_key_pem,
            verify=ssl_context_for(endpoint),
            **options,  # type: ignore[arg-type]
        )

    return make
