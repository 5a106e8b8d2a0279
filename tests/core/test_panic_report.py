"""A panic in the core reaches Python as the opaque crypto error, and stderr learns where it
happened but never the panic's message: a message can quote the data the code was handling,
and Rust's default hook prints it to stderr (a service's logs) before the panic is caught."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from nomyo_native import _core, errors

from ._probes import probes_module

_testing = probes_module()

# Messages a bug could panic with, each with a marker the test looks for in stderr: a key's
# hex, a line of a prompt (non-ASCII, several lines), a slice's numbers, a long dump.
MESSAGES = [
    "unwrapped key 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    "prompt: Ελλάδα 首都は? 🔐\nsecond line of the prompt\r\nthird",
    "range end index 4242 out of range for slice of length 17",
    "dump " + "5a" * 4000,
]

# Panics with each message, on the main thread and on another one, and prints what each raised.
PANICKING = """
import json, sys, threading
from nomyo_native._core import _testing
messages = json.loads(sys.stdin.read())
raised = []
def panic(message):
    try:
        _testing.panic_with(message)
    except Exception as exc:
        raised.append([type(exc).__module__ + "." + type(exc).__name__, str(exc)])
for message in messages:
    panic(message)
    worker = threading.Thread(target=panic, args=(message,))
    worker.start()
    worker.join()
print(json.dumps(raised))
"""


def panicking(messages: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PANICKING)],
        input=json.dumps(messages),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def crypto_failure() -> str:
    """The one text of every crypto failure, as opening with the wrong key gets it."""
    keypair, other = _core.ClientKeyPair.generate(2048), _core.ClientKeyPair.generate(2048)
    try:
        sealed = _core.seal({"probe": 1}, _core.ServerPublicKey.from_pem(other.public_key_pem))
        with pytest.raises(errors.CryptoError) as caught:
            _core.open_envelope(sealed, keypair)
    finally:
        keypair.wipe()
        other.wipe()
    return str(caught.value)


def test_a_panic_is_the_opaque_crypto_error(crypto_failure: str) -> None:
    for message in MESSAGES:
        with pytest.raises(errors.CryptoError) as caught:
            _testing.panic_with(message)
        assert str(caught.value) == crypto_failure
        assert caught.value.__cause__ is None and caught.value.__context__ is None


@pytest.mark.parametrize("message", MESSAGES, ids=["key", "prompt", "slice", "dump"])
def test_stderr_says_where_a_panic_was_but_not_its_message(
    message: str, crypto_failure: str
) -> None:
    result = panicking([message])
    assert result.returncode == 0, result.stderr[-2000:]
    # The main thread's panic and the other thread's: both the crypto error, word for word.
    assert json.loads(result.stdout) == [["nomyo_native.errors.CryptoError", crypto_failure]] * 2
    lines = result.stderr.splitlines()
    # One line per panic, each naming the place in the core's sources.
    assert len(lines) == 2, result.stderr[-2000:]
    for line in lines:
        assert line.startswith("nomyo_native._core: internal error (a Rust panic at ")
        assert "testing.rs:" in line
    # Nothing of the message: not whole, not any of its lines, not its longest word.
    for part in [message, *message.splitlines(), max(message.split(), key=len)]:
        assert part.strip() not in result.stderr
    assert "panicked" not in result.stderr


def test_many_panics_print_one_line_each_and_the_process_goes_on() -> None:
    result = panicking(MESSAGES * 3)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(json.loads(result.stdout)) == 2 * 3 * len(MESSAGES)
    assert len(result.stderr.splitlines()) == 2 * 3 * len(MESSAGES)
    for message in MESSAGES:
        assert max(message.split(), key=len) not in result.stderr
