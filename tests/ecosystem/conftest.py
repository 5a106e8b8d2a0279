"""The openai SDK and libraries built on it, on nomyo_native's transport, against the local
endpoint over HTTPS.

These tests run in the ecosystem venvs (``make test-ecosystem``: one venv per pin set,
``NOMYO_ECOSYSTEM`` names it), not in the project's venv. Every test ends by checking the
endpoint's request log: nothing may arrive outside the protocol's two paths.

The endpoint's backend is scripted by the model name: ``echo`` answers with the last user
message (a tool call when tools are given), ``status-<code>`` answers that status,
``flaky-<n>`` answers 503 (``Retry-After: 0``) to its first ``n`` requests, then echoes.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nomyo_native.server import RunningServer, ServerConfig, ServerKey, start_server
from nomyo_native.server.app import Refusal
from nomyo_native.server.backends import EchoBackend

if not os.environ.get("NOMYO_ECOSYSTEM") or importlib.util.find_spec("openai") is None:
    # The project's venv has the SDK only for type checks: these run per ecosystem venv.
    collect_ignore_glob = ["test_*.py"]

PROTOCOL_LINES = {("GET", "/pki/public_key"), ("POST", "/v1/chat/secure_completion")}
SECURE_POST = ("POST", "/v1/chat/secure_completion")


class ScriptedBackend(EchoBackend):
    """The echo backend, with statuses and transient failures chosen by the model name."""

    name = "scripted"

    def __init__(self) -> None:
        self.failures: dict[str, int] = {}

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        model = str(request.get("model", ""))
        status = re.fullmatch(r"status-(\d{3})(?:-after-(\d+))?", model)
        if status is not None:
            headers = {"Retry-After": status.group(2)} if status.group(2) else None
            raise Refusal(int(status.group(1)), f"scripted {status.group(1)}", headers)
        flaky = re.fullmatch(r"flaky-(\d+)(?:-\w+)?", model)
        if flaky is not None:
            seen = self.failures.get(model, 0)
            if seen < int(flaky.group(1)):
                self.failures[model] = seen + 1
                raise Refusal(503, "scripted transient failure", {"Retry-After": "0"})
        return await super().complete(request)


@pytest.fixture(scope="session")
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture(scope="session")
def endpoint(server_key: ServerKey, backend: ScriptedBackend) -> Iterator[RunningServer]:
    config = ServerConfig(
        server_key=server_key, host="127.0.0.1", port=0, tls_self_signed=True, backend=backend
    )
    with start_server(config) as running:
        yield running


@pytest.fixture(autouse=True)
def only_protocol_requests(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test: the endpoint saw nothing outside the protocol's two paths."""
    yield
    if "endpoint" in request.fixturenames:
        running: RunningServer = request.getfixturevalue("endpoint")
        stray = [line for line in running.request_log.lines if line not in PROTOCOL_LINES]
        assert stray == []


@pytest.fixture
def log(endpoint: RunningServer) -> Any:
    """The endpoint's request log, emptied for this test."""
    endpoint.request_log.clear()
    return endpoint.request_log


@pytest.fixture
def options(endpoint: RunningServer) -> dict[str, Any]:
    """Our client's options for the endpoint: its CA, its pinned key, a quick key size."""
    return {
        "ca_bundle": str(endpoint.ca_path),
        "server_key_fingerprint": endpoint.server_key_fingerprint,
        "key_size": 2048,
    }


@pytest.fixture
def posts(log: Any) -> Callable[[], int]:
    """How many secure-completion POSTs the endpoint received in this test."""
    return lambda: sum(1 for line in log.lines if line == SECURE_POST)
