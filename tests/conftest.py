"""Shared fixtures: in-process secure endpoints on free loopback ports.

Every endpoint is ``nomyo_native.server`` (pure Python on pyca/cryptography) served by uvicorn
in a background thread; ``.base_url``, ``.ca_path`` (self-signed HTTPS only),
``.server_key_fingerprint``, ``.public_key_pem``, ``.quoter`` (TPM, or None) and
``.recorded_keys`` (key recording only) describe it.

Session-scoped, shared by the whole run (start-up is costly: RSA-4096 keygen, TLS, swtpm):

- ``server_key``          one RSA-4096 server key reused by every endpoint below
- ``http_endpoint``       plain HTTP, echo backend, no TPM, no API keys
- ``secure_endpoint``     HTTPS with a throwaway CA (``.ca_path``), echo, no TPM
- ``recording_endpoint``  like ``secure_endpoint`` with TEST-ONLY AES key recording on
- ``swtpm_quoter``        a ``TpmQuoter`` on an owned swtpm (skips when swtpm is missing)
- ``swtpm_endpoint``      HTTPS + real quotes from ``swtpm_quoter`` (PCR changes made through
                          ``swtpm_quoter.pcr_extend`` show up in its responses)

Per test: ``endpoint_factory(**options)`` starts an endpoint with any ``ServerConfig`` option
(``api_keys=``, ``tier_policy=``, ``backend=`` ("echo", a URL or a Backend object),
``record_keys=``, ``tls_self_signed=``, ``quoter=``, ``tpm="swtpm"`` for a private swtpm,
``rate_limit_per_minute=``, ``max_body_bytes=``...) on a free port, with the shared server
key, and stops it after the test.

For a server in another process (memory forensics), run ``nomyo-native serve --port 0
--record-keys-insecure FILE`` and read FILE with
``nomyo_native.server.recording.read_key_record_file``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nomyo_native.server import RunningServer, ServerConfig, ServerKey, start_server


@pytest.fixture(scope="session")
def server_key() -> ServerKey:
    return ServerKey.generate(4096)


def _start(server_key: ServerKey, **options: Any) -> RunningServer:
    options.setdefault("server_key", server_key)
    options.setdefault("port", 0)
    options.setdefault("host", "127.0.0.1")
    return start_server(ServerConfig(**options))


@pytest.fixture(scope="session")
def http_endpoint(server_key: ServerKey) -> Iterator[RunningServer]:
    with _start(server_key) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def secure_endpoint(server_key: ServerKey) -> Iterator[RunningServer]:
    with _start(server_key, tls_self_signed=True) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def recording_endpoint(server_key: ServerKey) -> Iterator[RunningServer]:
    with pytest.warns(RuntimeWarning, match="KEY RECORDING IS ON"):
        endpoint = _start(server_key, tls_self_signed=True, record_keys=True)
    with endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def swtpm_quoter() -> Iterator[Any]:
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm is not installed (Debian packages swtpm, swtpm-tools)")
    pytest.importorskip("tpm2_pytss")
    from nomyo_native.server.tpm import SwtpmProcess, TpmQuoter

    with SwtpmProcess() as swtpm, TpmQuoter(swtpm.tcti) as quoter:
        yield quoter


@pytest.fixture(scope="session")
def swtpm_endpoint(server_key: ServerKey, swtpm_quoter: Any) -> Iterator[RunningServer]:
    with _start(server_key, tls_self_signed=True, quoter=swtpm_quoter) as endpoint:
        yield endpoint


@pytest.fixture
def endpoint_factory(server_key: ServerKey) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def factory(**options: Any) -> RunningServer:
        endpoint = _start(server_key, **options)
        started.append(endpoint)
        return endpoint

    yield factory
    for endpoint in started:
        endpoint.stop()
