"""After faults, nothing secret is left behind: the forensics scan over a faulty exchange.

A child process runs requests against the loopback peer while it drops connections mid-body,
stalls past the timeout, closes without answering, answers 503/500/429, and finally sends a
tampered envelope (which unwraps, then fails authentication). Every AES key of every attempt
(the peer decrypted each request and made each response key) and every JSON-framed plaintext
must be absent from the child's memory afterwards, failed attempts included.
"""

from __future__ import annotations

import pytest

from forensics.harness import CATEGORIES, examine
from forensics.scanner import supported

from .loopback import (
    CLOSE,
    DROP_MID_BODY,
    ECHO_PREFIX,
    OK,
    STALL,
    TAMPER,
    json_status,
    status,
)

pytestmark = [
    pytest.mark.linux_only,
    pytest.mark.skipif(
        not supported(), reason="needs Linux /proc/PID/mem and ptrace rights over a child"
    ),
]


def test_no_secret_left_behind_after_faults(loopback) -> None:
    loopback.then(
        DROP_MID_BODY, OK,  # request 0: network failure, retried
        json_status(503, "backend down"), OK,  # 1
        STALL, OK,  # 2: past the timeout, retried
        status(500, "<html>oops</html>", content_type="text/html"), OK,  # 3
        CLOSE, OK,  # 4
        json_status(429, "slow down", retry_after="0"), OK,  # 5
        DROP_MID_BODY, DROP_MID_BODY,  # 6: fails for good
        TAMPER,  # 7: unwraps, then fails authentication
    )  # fmt: skip
    examination = examine(
        "ours",
        loopback.url,
        lambda _outcome: loopback.recorded_keys(),
        requests=8,
        reply_prefix=ECHO_PREFIX,
        extra_args=("--max-retries", "1", "--timeout", "1.0", "--retry-backoff", "0.01"),
    )
    assert examination.outcome["ok"] == 6, examination.outcome
    assert examination.outcome["mismatches"] == 0
    assert examination.outcome["errors"] == ["APIConnectionError", "SecurityError"]
    # 15 request keys (one per attempt) and 10 response keys (6 answers, 3 drops, 1 tamper).
    assert examination.keys_hunted == 25
    assert len(set(examination.outcome["buffers_live"])) == 1, examination.outcome["buffers_live"]
    found = {c: examination.scan.counts[c] for c in CATEGORIES}
    where = {c: examination.scan.where(c) for c in CATEGORIES if found[c]}
    assert found == dict.fromkeys(CATEGORIES, 0), where
