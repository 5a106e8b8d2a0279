"""One user script (tests/reference/user_script.py), run with ``import nomyo`` by the reference
venv's interpreter and with ``import nomyo_native as nomyo`` by ours, against the same local
endpoint over HTTPS: same results, same exceptions, shared key directories."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from tests.reference import USER_SCRIPT, reference_python, run_json

pytestmark = pytest.mark.reference


def run_user_script(module: str, base_url: str, key_dir: str | None) -> dict[str, Any]:
    """The script under the interpreter that has ``module``: the reference venv's for nomyo."""
    python = str(reference_python()) if module == "nomyo" else sys.executable
    return run_json([python, str(USER_SCRIPT), module, base_url, *([key_dir] if key_dir else [])])


@pytest.fixture
def endpoint(endpoint_factory, monkeypatch):
    endpoint = endpoint_factory(tls_self_signed=True, api_keys=("sk-interop",))
    # The reference has no CA option: it trusts what httpx trusts, which honours SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(endpoint.ca_path))
    return endpoint


def test_same_script_same_results_with_either_module(endpoint):
    results = {}
    for name in ("nomyo", "nomyo_native"):
        results[name] = run_user_script(name, endpoint.base_url, None)
    ref, ours = results["nomyo"], results["nomyo_native"]
    assert ref["content"] == ours["content"] == "What is the capital of France?"
    assert ref["tool"] == ours["tool"] == "lookup"
    assert ref["tier"] == ours["tier"] == "high"
    assert (
        ref["errors"]
        == ours["errors"]
        == [
            ["ServiceUnavailableError", 503],
            ["AuthenticationError", 401],
            ["ValueError", None],
        ]
    )
    assert set(ref["metadata_keys"]) <= set(ours["metadata_keys"])


@pytest.mark.parametrize("writer", ["nomyo", "nomyo_native"])
def test_key_dir_written_by_either_is_used_by_the_other(endpoint, tmp_path, writer):
    reader = "nomyo_native" if writer == "nomyo" else "nomyo"
    key_dir = str(tmp_path / "client_keys")
    first = run_user_script(writer, endpoint.base_url, key_dir)
    second = run_user_script(reader, endpoint.base_url, key_dir)
    assert first["public_key_pem"] == second["public_key_pem"]
    assert second["content"] == "What is the capital of France?"
