"""Memory forensics: after N requests, nothing secret is left in the client process.

A child process runs N chat requests against the local endpoint with TEST-ONLY key recording on,
drops its responses, and waits; the parent reads the child's whole readable memory and counts
(a) the AES keys of every exchange (the server recorded the request key it unwrapped and the
response key it made), (b) JSON-framed copies of the request plaintext and (c) of the decrypted
response plaintext. Ours must show 0 of each; nomyo 0.2.9, measured the same way, is printed
beside it for comparison only.
"""

from __future__ import annotations

import pytest

from .harness import CATEGORIES, Examination, examine
from .scanner import supported

pytestmark = [
    pytest.mark.linux_only,
    pytest.mark.skipif(
        not supported(), reason="needs Linux /proc/PID/mem and ptrace rights over a child"
    ),
    pytest.mark.filterwarnings("ignore:KEY RECORDING IS ON:RuntimeWarning"),
]

REQUESTS = 8


def _keys_of(endpoint):
    def keys_for(outcome: dict) -> list[bytes]:
        wanted = set(outcome["payload_ids"])
        records = [r for r in endpoint.recorded_keys if r.payload_id in wanted]
        assert len(records) == len(wanted), "the endpoint did not record every exchange"
        return [k for r in records for k in (r.request_aes_key, r.response_aes_key)]

    return keys_for


@pytest.fixture(scope="module")
def ours(recording_endpoint) -> Examination:
    return examine(
        "ours",
        recording_endpoint.base_url,
        _keys_of(recording_endpoint),
        requests=REQUESTS,
        ca=str(recording_endpoint.ca_path),
    )


def test_our_client_leaves_no_key_and_no_plaintext(ours: Examination) -> None:
    assert ours.outcome["ok"] == REQUESTS, ours.outcome
    assert ours.outcome["mismatches"] == 0
    assert ours.keys_hunted == 2 * REQUESTS
    # Every locked buffer of a request is released with it (a leak would also leave its
    # secret readable): the count after each request is the same.
    assert len(set(ours.outcome["buffers_live"])) == 1, ours.outcome["buffers_live"]
    found = {c: ours.scan.counts[c] for c in CATEGORIES}
    where = {c: ours.scan.where(c) for c in CATEGORIES if found[c]}
    assert found == dict.fromkeys(CATEGORIES, 0), where
    # A scan that read almost nothing would prove nothing.
    assert ours.scan.bytes_scanned > 20 * 2**20
    assert ours.scan.regions_unreadable == 0


def test_large_messages_leave_nothing_either(recording_endpoint) -> None:
    # 1 MiB messages: the JSON writer and reader grow their locked buffers several times, and
    # the response arrives in many chunks; no step may leave a copy behind.
    large = examine(
        "ours",
        recording_endpoint.base_url,
        _keys_of(recording_endpoint),
        requests=2,
        ca=str(recording_endpoint.ca_path),
        extra_args=("--pad", str(2**20)),
    )
    assert large.outcome["ok"] == 2, large.outcome
    assert large.outcome["mismatches"] == 0
    found = {c: large.scan.counts[c] for c in CATEGORIES}
    assert found == dict.fromkeys(CATEGORIES, 0), {c: large.scan.where(c) for c in CATEGORIES}


def test_concurrent_requests_leave_nothing_either(recording_endpoint) -> None:
    # 16 requests in flight at once: seal and open run on several worker threads together,
    # whose stacks and buffers are scanned as well.
    concurrent = examine(
        "ours",
        recording_endpoint.base_url,
        _keys_of(recording_endpoint),
        requests=32,
        ca=str(recording_endpoint.ca_path),
        extra_args=("--concurrency", "16"),
    )
    assert concurrent.outcome["ok"] == 32, concurrent.outcome
    assert concurrent.outcome["mismatches"] == 0
    assert concurrent.keys_hunted == 64
    assert len(set(concurrent.outcome["buffers_live"])) == 1, concurrent.outcome
    found = {c: concurrent.scan.counts[c] for c in CATEGORIES}
    assert found == dict.fromkeys(CATEGORIES, 0), {c: concurrent.scan.where(c) for c in CATEGORIES}


def test_scan_finds_a_deliberate_copy_in_the_same_setting(recording_endpoint) -> None:
    # Positive control under the same conditions: the child itself keeps compact JSON of its
    # requests. If this count were 0, the zeros above would mean nothing.
    leaky = examine(
        "ours",
        recording_endpoint.base_url,
        _keys_of(recording_endpoint),
        requests=2,
        ca=str(recording_endpoint.ca_path),
        extra_args=("--leak-json",),
    )
    assert leaky.outcome["ok"] == 2
    assert leaky.scan.counts["request_json"] >= 2
    assert leaky.scan.counts["any_content_json"] >= 2
    assert leaky.scan.counts["aes_keys"] == 0


@pytest.mark.reference
def test_reference_client_measured_beside_ours(recording_endpoint, ours, capsys) -> None:
    reference = examine(
        "reference",
        recording_endpoint.base_url,
        _keys_of(recording_endpoint),
        requests=REQUESTS,
        ca=str(recording_endpoint.ca_path),
        label="nomyo-0.2.9",
    )
    # Printed, not asserted: what the reference leaves is its business; ours is asserted above.
    with capsys.disabled():
        print(f"\nmemory forensics after {REQUESTS} requests (occurrences in the client process):")
        print("  " + ours.row())
        print("  " + reference.row())
    assert reference.outcome["ok"] == REQUESTS, reference.outcome
