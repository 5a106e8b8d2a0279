"""Memory forensics of the SDK path: a process that made 100 openai SDK requests through our
transport holds no AES key and no serialized response plaintext.

The SDK serializes each request itself (its ``bytes`` are plaintext by design, see the README),
so JSON-framed request copies may remain in memory the SDK's objects freed: they are counted and
reported, not asserted. What our path is responsible for is asserted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from tests.forensics.harness import examine
from tests.forensics.scanner import supported
from tests.forensics.test_forensics import _keys_of

from nomyo_native.server import RunningServer, ServerConfig, ServerKey, start_server

pytestmark = [
    pytest.mark.linux_only,
    pytest.mark.skipif(
        not supported(), reason="needs Linux /proc/PID/mem and ptrace rights over a child"
    ),
    pytest.mark.filterwarnings("ignore:KEY RECORDING IS ON:RuntimeWarning"),
    # Once per make test-ecosystem, with the newest SDK (the path is the same on every line).
    pytest.mark.skipif(
        os.environ.get("NOMYO_ECOSYSTEM") != "sdk3", reason="run in the sdk3 venv only"
    ),
]

REQUESTS = 100


@pytest.fixture(scope="module")
def recording(server_key: ServerKey) -> Iterator[RunningServer]:
    config = ServerConfig(
        server_key=server_key, host="127.0.0.1", port=0, tls_self_signed=True, record_keys=True
    )
    with start_server(config) as endpoint:
        yield endpoint


def test_100_sdk_requests_leave_no_key_and_no_response_plaintext(
    recording: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sdk = examine(
        "openai",
        recording.base_url,
        _keys_of(recording),
        requests=REQUESTS,
        ca=str(recording.ca_path),
        timeout=600.0,
    )
    assert sdk.outcome["ok"] == REQUESTS, sdk.outcome
    assert sdk.outcome["mismatches"] == 0
    assert sdk.keys_hunted == 2 * REQUESTS
    assert len(set(sdk.outcome["buffers_live"])) == 1, sdk.outcome["buffers_live"]
    counts = sdk.scan.counts
    assert counts["aes_keys"] == 0, sdk.scan.where("aes_keys")
    assert counts["response_json"] == 0, sdk.scan.where("response_json")
    assert sdk.scan.bytes_scanned > 20 * 2**20
    assert sdk.scan.regions_unreadable == 0
    with capsys.disabled():
        print(f"\n{sdk.row()}")
