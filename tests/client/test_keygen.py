"""Background key generation (issue 15): the pending pair is handed over once, discarded on
request, and never used by a fork child. No timing is asserted: only what is handed over."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import nomyo_native as nomyo
from nomyo_native import _core, _keygen, _keys

BITS = 2048


def keygen_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nomyo-keygen"]


def test_the_pair_is_handed_over_once_in_the_size_asked_for():
    pending = _keygen.PendingKeyPair(BITS)
    keypair = pending.take(BITS)
    assert keypair is not None and keypair.bits == BITS and not keypair.wiped
    assert pending.take(BITS) is None  # once
    keypair.wipe()


def test_another_size_is_not_handed_over_and_the_pair_is_wiped():
    pending = _keygen.PendingKeyPair(BITS)
    pending._done.wait()
    generated = pending._keypair
    assert generated is not None
    assert pending.take(3072) is None
    assert generated.wiped and pending.discarded


class GatedGeneration:
    """Stands in for ``_keys.generate_keypair``: counts generations, holds each until released."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.made: list[_core.ClientKeyPair] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, bits: int) -> _core.ClientKeyPair:
        self.calls.append(bits)
        self.entered.set()
        self.release.wait(60)
        self.made.append(_core.ClientKeyPair.generate(bits))
        return self.made[-1]


def test_discard_wipes_a_generated_pair_and_one_still_running_when_it_ends(monkeypatch):
    done = _keygen.PendingKeyPair(BITS)
    generated_pair = done.take(BITS)
    assert generated_pair is not None
    discarded = _keygen.PendingKeyPair(BITS)
    discarded._wanted.set()
    discarded._done.wait()
    pair = discarded._keypair
    assert pair is not None
    discarded.discard()
    assert pair.wiped and discarded.take(BITS) is None

    gate = GatedGeneration()
    monkeypatch.setattr(_keys, "generate_keypair", gate)
    running = _keygen.PendingKeyPair(BITS)
    running._wanted.set()  # start now, not after the delay
    assert gate.entered.wait(60)
    running.discard()  # while generating: wiped when it ends
    gate.release.set()
    running._thread.join()
    assert gate.made[0].wiped and running._keypair is None and running.take(BITS) is None
    generated_pair.wipe()


def test_discarded_before_the_start_delay_generates_nothing(monkeypatch):
    gate = GatedGeneration()
    gate.release.set()
    monkeypatch.setattr(_keys, "generate_keypair", gate)
    pending = _keygen.PendingKeyPair(BITS)
    pending.discard()  # load_keys right after construction
    pending._thread.join()
    assert gate.calls == [] and pending.take(BITS) is None


def test_asked_for_before_the_delay_it_starts_at_once(monkeypatch):
    gate = GatedGeneration()
    gate.release.set()
    monkeypatch.setattr(_keys, "generate_keypair", gate)
    monkeypatch.setattr(_keygen, "START_DELAY_S", 3600.0)  # would never start by itself
    pending = _keygen.PendingKeyPair(BITS)
    keypair = pending.take(BITS)
    assert gate.calls == [BITS] and keypair is gate.made[0] and not keypair.wiped
    keypair.wipe()


FORK_CHILD = textwrap.dedent(
    """
    import os, sys
    from nomyo_native import _keygen

    wait_first = sys.argv[1] == "generated"
    pending = _keygen.PendingKeyPair(2048)
    if wait_first:
        pending._done.wait()
    inherited = pending._keypair
    pid = os.fork()
    if pid == 0:
        # The child: the parent's pair is wiped here, never handed over, and take() returns at
        # once even if the generating thread (absent in the child) had not finished.
        ok = pending.take(2048) is None and pending.discarded
        ok = ok and (inherited is None or inherited.wiped)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    mine = pending.take(2048)
    print(os.waitstatus_to_exitcode(status), mine is not None and not mine.wiped)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("when", ["generated", "generating"])
def test_a_fork_child_never_uses_the_parents_pending_pair(when):
    done = subprocess.run(
        [sys.executable, "-c", FORK_CHILD, when],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # The child refused the pair; the parent still gets its own, intact.
    assert done.stdout.split() == ["0", "True"]


@pytest.mark.parametrize(
    ("option", "env", "expected"),
    [
        (None, None, True),
        (None, "0", False),
        (None, "off", False),
        (None, "1", True),
        (False, None, False),
        (True, "0", True),
    ],
)
def test_opt_out_by_option_or_environment(monkeypatch, option, env, expected):
    if env is None:
        monkeypatch.delenv(_keygen.BACKGROUND_KEYGEN_ENV, raising=False)
    else:
        monkeypatch.setenv(_keygen.BACKGROUND_KEYGEN_ENV, env)
    assert _keygen.background_keygen_enabled(option) is expected


# ---- in the client ---------------------------------------------------------------------------

URL = "https://127.0.0.1:9"  # never contacted: these tests only make and hand over keys


def pending_of(client: nomyo.SecureCompletionClient) -> _keygen.PendingKeyPair | None:
    return client._keys._pending


def generated(pending: _keygen.PendingKeyPair) -> _core.ClientKeyPair:
    pending._done.wait()
    assert pending._keypair is not None
    return pending._keypair


def test_a_client_without_key_source_uses_the_pair_made_in_the_background(monkeypatch):
    monkeypatch.delenv(_keygen.BACKGROUND_KEYGEN_ENV, raising=False)
    client = nomyo.SecureCompletionClient(URL, key_size=BITS)
    pending = pending_of(client)
    assert pending is not None and pending.bits == BITS
    made = generated(pending)
    client._refresh_keys()  # what the first request does
    assert client.private_key is made and not made.wiped
    assert pending_of(client) is None


def test_load_keys_discards_the_pair_being_made(monkeypatch, tmp_path):
    monkeypatch.delenv(_keygen.BACKGROUND_KEYGEN_ENV, raising=False)
    own = _core.ClientKeyPair.generate(BITS)
    own.save(tmp_path / "private_key.pem", tmp_path / "public_key.pem")
    client = nomyo.SecureCompletionClient(URL, key_size=BITS)
    pending = pending_of(client)
    assert pending is not None
    client.load_keys(str(tmp_path / "private_key.pem"))
    assert pending.discarded and pending_of(client) is None
    pending._thread.join()
    assert pending._keypair is None  # wiped when its generation ended, never installed
    assert client.client_key_fingerprint == own.fingerprint


def test_generate_keys_and_dispose_discard_it_too(monkeypatch):
    monkeypatch.delenv(_keygen.BACKGROUND_KEYGEN_ENV, raising=False)
    client = nomyo.SecureCompletionClient(URL, key_size=BITS)
    pending = pending_of(client)
    assert pending is not None
    made = generated(pending)
    client.generate_keys()
    assert pending.discarded and made.wiped and client.private_key is not made
    disposed = nomyo.SecureCompletionClient(URL, key_size=BITS)
    second = pending_of(disposed)
    assert second is not None
    disposed.dispose()
    assert second.discarded and pending_of(disposed) is None


def test_siblings_share_one_background_pair(monkeypatch):
    monkeypatch.delenv(_keygen.BACKGROUND_KEYGEN_ENV, raising=False)
    client = nomyo.SecureCompletionClient(URL, key_size=BITS)
    pending = pending_of(client)
    assert pending is not None
    sibling = client.clone_for("https://127.0.0.1:10")
    assert pending_of(sibling) is pending  # no second generation started
    made = generated(pending)
    sibling._refresh_keys()  # the sibling's first request comes first
    assert sibling.private_key is made and client.private_key is made


@pytest.mark.parametrize(
    ("options", "env"),
    [({"background_keygen": False}, None), ({}, "0"), ({"key_dir": "unused-key-dir"}, None)],
    ids=["option", "environment", "key_dir"],
)
def test_opt_out_or_a_key_source_generates_nothing(monkeypatch, tmp_path, options, env):
    monkeypatch.chdir(tmp_path)
    if env is None:
        monkeypatch.delenv(_keygen.BACKGROUND_KEYGEN_ENV, raising=False)
    else:
        monkeypatch.setenv(_keygen.BACKGROUND_KEYGEN_ENV, env)
    before = set(keygen_threads())
    client = nomyo.SecureCompletionClient(URL, key_size=BITS, **options)
    sync = nomyo.SyncSecureChatCompletion(URL, key_size=BITS, **options)
    assert pending_of(client) is None and pending_of(sync.client) is None
    assert set(keygen_threads()) <= before
    assert not (tmp_path / "unused-key-dir").exists()  # and nothing was written


def test_the_sync_client_uses_it_as_well(monkeypatch):
    monkeypatch.delenv(_keygen.BACKGROUND_KEYGEN_ENV, raising=False)
    chat = nomyo.SyncSecureChatCompletion(URL, key_size=BITS)
    pending = pending_of(chat.client)
    assert pending is not None
    made = generated(pending)
    chat.client._refresh_keys()
    assert chat.client.private_key is made


def test_a_client_dropped_before_its_first_request_generates_nothing(monkeypatch):
    monkeypatch.delenv(_keygen.BACKGROUND_KEYGEN_ENV, raising=False)
    gate = GatedGeneration()
    gate.release.set()
    monkeypatch.setattr(_keys, "generate_keypair", gate)
    monkeypatch.setattr(_keygen, "START_DELAY_S", 3600.0)  # only a discard can end the wait
    client = nomyo.SecureCompletionClient(URL, key_size=BITS)
    pending = pending_of(client)
    assert pending is not None
    del client
    gc.collect()
    pending._thread.join(60)
    assert not pending._thread.is_alive() and pending.discarded and gate.calls == []


@pytest.mark.parametrize("install", ["load_keys", "generate_keys"])
def test_keys_installed_while_the_first_request_waits_for_the_pair_are_kept(
    monkeypatch, tmp_path, install
):
    # The first request has taken the pending pair and waits for it; load_keys/generate_keys
    # meanwhile must win: the background pair is wiped, never installed over theirs.
    monkeypatch.delenv(_keygen.BACKGROUND_KEYGEN_ENV, raising=False)
    gate = GatedGeneration()
    own = _core.ClientKeyPair.generate(BITS)
    own.save(tmp_path / "private_key.pem", tmp_path / "public_key.pem")
    with monkeypatch.context() as patched:  # only the background generation is gated
        patched.setattr(_keys, "generate_keypair", gate)
        client = nomyo.SecureCompletionClient(URL, key_size=BITS)
    first_request = threading.Thread(target=client._refresh_keys)
    first_request.start()
    assert gate.entered.wait(60)
    while pending_of(client) is not None:  # until the first request holds the pair
        first_request.join(0.01)
    if install == "load_keys":
        client.load_keys(str(tmp_path / "private_key.pem"))
    else:
        client.generate_keys()
    installed = client.private_key
    gate.release.set()
    first_request.join(60)
    assert not first_request.is_alive()
    assert client.private_key is installed and not installed.wiped
    if install == "load_keys":
        assert client.client_key_fingerprint == own.fingerprint
    assert gate.made and all(made.wiped for made in gate.made)
    client.dispose()


FORK_WHILE_EVENTS_HELD = textwrap.dedent(
    """
    import os, signal, threading, time
    from nomyo_native import _keygen

    pending = _keygen.PendingKeyPair(2048)
    # The generating thread holds an Event's inner lock for a moment in wait() and set(): a
    # fork at that moment must not leave the child waiting for a lock no thread will release.
    held, finish = threading.Event(), threading.Event()

    def hold() -> None:
        with pending._wanted._cond, pending._done._cond:
            held.set()
            finish.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if pending.take(2048) is None and pending.discarded else 1)
    finish.set()
    holder.join()
    for _ in range(6000):  # up to a minute, then the child is taken for hung
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            print(os.waitstatus_to_exitcode(status))
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        print("hung")
    pending.discard()
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_while_the_generating_thread_holds_an_event_lock_does_not_hang_the_child():
    done = subprocess.run(
        [sys.executable, "-c", FORK_WHILE_EVENTS_HELD],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]
