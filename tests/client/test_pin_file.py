"""Issue 10 item 6: the trust-on-first-use pin file is safe across processes, keyed by the
normalized origin, and still honours (then migrates) files written with raw-URL keys."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import nomyo_native as nomyo
from nomyo_native._pinfile import normalize_origin
from nomyo_native.client import SecureCompletionClient as ClientClass

FP_A = "sha256:" + "a" * 64
FP_B = "sha256:" + "b" * 64

PROCESSES = 8
PINS_PER_PROCESS = 20

# Each child pins its own servers in the shared file through the client, as fast as it can.
CHILD = textwrap.dedent(
    """
    import sys
    from nomyo_native.client import SecureCompletionClient

    pin_file, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for n in range(count):
        client = SecureCompletionClient(
            f"https://w{worker}-host{n}.test", server_key_pin_file=pin_file, key_size=2048
        )
        client._check_pin_file("sha256:" + format(worker * 1000 + n, "064x"))
    """
)


def test_concurrent_processes_lose_no_pin(tmp_path):
    pin_file = tmp_path / "pins.json"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(pin_file), str(worker), str(PINS_PER_PROCESS)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(PROCESSES)
    ]
    for child in children:
        _out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err[-2000:]
    pins = json.loads(pin_file.read_text())
    expected = {
        f"https://w{worker}-host{n}.test": "sha256:" + format(worker * 1000 + n, "064x")
        for worker in range(PROCESSES)
        for n in range(PINS_PER_PROCESS)
    }
    assert pins == expected, f"{len(expected) - len(pins)} pins lost"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pins.json", "pins.json.lock"]


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://api.nomyo.ai", "https://api.nomyo.ai"),
        ("https://API.Nomyo.AI/", "https://api.nomyo.ai"),
        ("https://api.nomyo.ai:443", "https://api.nomyo.ai"),
        ("https://api.nomyo.ai:443/", "https://api.nomyo.ai"),
        ("http://api.nomyo.ai:80/", "http://api.nomyo.ai"),
        ("https://api.nomyo.ai:8443/", "https://api.nomyo.ai:8443"),
        ("http://api.nomyo.ai:443", "http://api.nomyo.ai:443"),
        ("https://api.nomyo.ai/prefix/", "https://api.nomyo.ai/prefix"),
        ("https://api.nomyo.ai/prefix///", "https://api.nomyo.ai/prefix"),
        ("https://api.nomyo.ai/?q=1#frag", "https://api.nomyo.ai"),
        ("HTTPS://api.nomyo.ai", "https://api.nomyo.ai"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        ("https://BÜCHER.example:443/", "https://xn--bcher-kva.example"),
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
        ("https://[::1]:12434/", "https://[::1]:12434"),
        ("https://[0:0:0:0:0:0:0:1]:12434", "https://[::1]:12434"),
        ("https://[2001:DB8::1]", "https://[2001:db8::1]"),
        ("https://127.0.0.1:12434/", "https://127.0.0.1:12434"),
    ],
)
def test_pins_are_keyed_by_the_normalized_origin(url, origin):
    assert normalize_origin(url) == origin


@pytest.mark.parametrize(
    "spelling", ["https://PEER.test", "https://peer.test/", "https://peer.test:443//"]
)
def test_other_spellings_of_a_pinned_origin_are_held_to_the_pin(tmp_path, spelling):
    pin_file = tmp_path / "pins.json"
    ClientClass("https://peer.test", server_key_pin_file=pin_file)._check_pin_file(FP_A)
    other = ClientClass(spelling, server_key_pin_file=pin_file)
    with pytest.raises(nomyo.SecurityError, match="differs"):
        other._check_pin_file(FP_B)
    other._check_pin_file(FP_A)
    assert json.loads(pin_file.read_text()) == {"https://peer.test": FP_A}


def test_old_raw_url_keys_are_honoured_and_migrated(tmp_path):
    pin_file = tmp_path / "pins.json"
    # As the earlier client wrote it: keyed by the raw base URL string.
    pin_file.write_text(
        json.dumps({"https://PEER.test:443": FP_A, "https://Other.test/v1": FP_B.upper()})
    )
    client = ClientClass("https://peer.test/", server_key_pin_file=pin_file)
    with pytest.raises(nomyo.SecurityError, match="differs"):
        client._check_pin_file(FP_B)  # a silent re-pin would accept this
    assert json.loads(pin_file.read_text())["https://PEER.test:443"] == FP_A, "unchanged"
    client._check_pin_file(FP_A)
    # The next write migrates every key, keeping every pin.
    assert json.loads(pin_file.read_text()) == {
        "https://peer.test": FP_A,
        "https://other.test/v1": "sha256:" + "b" * 64,
    }


def test_two_old_spellings_pinned_to_different_keys_are_refused(tmp_path):
    pin_file = tmp_path / "pins.json"
    pin_file.write_text(json.dumps({"https://peer.test": FP_A, "https://PEER.test/": FP_B}))
    with pytest.raises(nomyo.SecurityError, match="different"):
        ClientClass("https://peer.test", server_key_pin_file=pin_file)._check_pin_file(FP_A)


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"https://peer.test": 5}', '{"https://peer.test": "sha256:zz"}'],
)
def test_a_broken_pin_file_is_refused_not_overwritten(tmp_path, content):
    pin_file = tmp_path / "pins.json"
    pin_file.write_text(content)
    with pytest.raises(nomyo.SecurityError, match="pin file"):
        ClientClass("https://peer.test", server_key_pin_file=pin_file)._check_pin_file(FP_A)
    assert pin_file.read_text() == content


def test_pin_file_path_expands_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))  # what expanduser reads on Windows
    ClientClass("https://peer.test", server_key_pin_file="~/pins.json")._check_pin_file(FP_A)
    assert json.loads((tmp_path / "pins.json").read_text()) == {"https://peer.test": FP_A}


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("HTTPS://peer.test:443", "https://peer.test"),
        ("Https://Peer.Test:443/", "https://peer.test"),
        ("HTTP://peer.test:80/", "http://peer.test"),
        ("hTTp://peer.test:8080/", "http://peer.test:8080"),
        ("HTTPS://[::1]:443/v1/", "https://[::1]/v1"),
    ],
)
def test_default_port_is_dropped_whatever_the_case_of_the_scheme(tmp_path, url, origin):
    # httpx2 recognises a default port only for a lower-case scheme: "HTTPS://host:443" kept
    # ":443" and got a pin of its own, so a second spelling of a pinned server re-pinned.
    assert normalize_origin(url) == origin
    pin_file = tmp_path / "pins.json"
    ClientClass(origin, server_key_pin_file=pin_file, allow_http=True)._check_pin_file(FP_A)
    other = ClientClass(url, server_key_pin_file=pin_file, allow_http=True)
    with pytest.raises(nomyo.SecurityError, match="differs"):
        other._check_pin_file(FP_B)
