"""Issue 12 item 4: one exception tree. The core raises the package's own classes
(``nomyo_native.errors``), each already the class a user catches; ``_core`` keeps its old names
for them, and a size error says which direction it came from."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomyo_native import _core, errors

# `_core`'s historical names and the package classes they now are.
ALIASES: dict[str, type[Exception]] = {
    "CoreError": errors.CoreError,
    "CryptoError": errors.CryptoError,
    "EnvelopeError": errors.EnvelopeError,
    "PayloadTooLargeError": errors.SizeLimitError,
    "KeyFormatError": errors.KeyFormatError,
    "KeyPasswordError": errors.KeyPasswordError,
    "KeyPermissionError": errors.KeyPermissionError,
    "KeyDisposedError": errors.KeyDisposedError,
    "TpmFormatError": errors.TpmFormatError,
}
CRYPTO_FAILURE = "decryption failed: the response could not be authenticated"


@pytest.fixture(scope="module")
def keypair() -> Iterator[_core.ClientKeyPair]:
    kp = _core.ClientKeyPair.generate(2048)
    yield kp
    kp.wipe()


def own_server_key(kp: _core.ClientKeyPair) -> _core.ServerPublicKey:
    return _core.ServerPublicKey.from_pem(kp.public_key_pem)


def test_core_names_are_the_package_classes() -> None:
    for name, cls in ALIASES.items():
        assert getattr(_core, name) is cls, name
        assert cls.__module__ == "nomyo_native.errors", name
        assert issubclass(cls, errors.CoreError), name


def test_one_class_is_named_payload_too_large() -> None:
    """There used to be two (`_core`'s and the package's); now the package's is the only one."""
    named = {
        id(obj)
        for module in (_core, errors)
        for obj in vars(module).values()
        if isinstance(obj, type) and obj.__name__ == "PayloadTooLargeError"
    }
    assert named == {id(errors.PayloadTooLargeError)}


def test_crypto_failure_is_an_opaque_security_error(keypair: _core.ClientKeyPair) -> None:
    other = _core.ClientKeyPair.generate(2048)
    try:
        sealed = _core.seal({"x": 1}, own_server_key(other))
    finally:
        other.wipe()
    with pytest.raises(errors.CryptoError) as info:
        _core.open_envelope(sealed, keypair)
    assert isinstance(info.value, errors.SecurityError)
    assert not isinstance(info.value, ValueError)
    assert str(info.value) == CRYPTO_FAILURE
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_malformed_envelope_is_a_response_format_error(keypair: _core.ClientKeyPair) -> None:
    with pytest.raises(errors.EnvelopeError) as info:
        _core.open_envelope(b"{}", keypair)
    assert isinstance(info.value, errors.ResponseFormatError)
    assert isinstance(info.value, errors.SecurityError)
    assert isinstance(info.value, ValueError)  # nomyo 0.2.9 raised ValueError for these


def test_oversized_response_is_a_response_format_error(keypair: _core.ClientKeyPair) -> None:
    with pytest.raises(errors.ResponseTooLargeError) as info:
        _core.open_envelope(b" " * (_core.MAX_ENVELOPE_BYTES + 1), keypair)
    assert isinstance(info.value, errors.ResponseFormatError)
    assert isinstance(info.value, _core.PayloadTooLargeError)
    # Not the request-side error a caller catches to shrink what they send.
    assert not isinstance(info.value, errors.PayloadTooLargeError)
    assert str(info.value) == (
        f"the response envelope is {_core.MAX_ENVELOPE_BYTES + 1} bytes; "
        f"the limit is {_core.MAX_ENVELOPE_BYTES} bytes"
    )


def test_oversized_request_is_nomyos_payload_too_large(keypair: _core.ClientKeyPair) -> None:
    with pytest.raises(errors.RequestTooLargeError) as info:
        _core.seal({"content": "a" * _core.MAX_PLAINTEXT_BYTES}, own_server_key(keypair))
    assert isinstance(info.value, errors.PayloadTooLargeError)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, _core.PayloadTooLargeError)
    assert not isinstance(info.value, (errors.SecurityError, errors.ResponseFormatError))


def test_bad_key_is_a_key_load_error() -> None:
    with pytest.raises(errors.KeyFormatError) as info:
        _core.ServerPublicKey.from_pem(b"not a key")
    assert isinstance(info.value, errors.KeyLoadError)
    assert isinstance(info.value, ValueError)


def test_bad_password_is_a_key_load_error(keypair: _core.ClientKeyPair, tmp_path: Path) -> None:
    with pytest.raises(errors.KeyPasswordError, match="at least 8") as info:
        keypair.save(tmp_path / "k.pem", tmp_path / "k.pub", "short")
    assert isinstance(info.value, errors.KeyLoadError)
    assert isinstance(info.value, ValueError)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_exposed_key_file_is_an_insecure_key_file_error(
    keypair: _core.ClientKeyPair, tmp_path: Path
) -> None:
    private = tmp_path / "k.pem"
    keypair.save(private, tmp_path / "k.pub", None)
    private.chmod(0o644)
    with pytest.raises(errors.KeyPermissionError) as info:
        _core.ClientKeyPair.load(private)
    assert isinstance(info.value, errors.InsecureKeyFileError)
    assert isinstance(info.value, errors.SecurityError)
    assert f"chmod 600 {private}" in str(info.value)


def test_wiped_key_is_a_client_closed_error() -> None:
    kp = _core.ClientKeyPair.generate(2048)
    sealed = _core.seal({"x": 1}, own_server_key(kp))
    kp.wipe()
    with pytest.raises(errors.KeyDisposedError) as info:
        _core.open_envelope(sealed, kp)
    assert isinstance(info.value, errors.ClientClosedError)
    assert isinstance(info.value, RuntimeError)


def test_bad_tpm_structure_is_a_value_error() -> None:
    with pytest.raises(errors.TpmFormatError) as info:
        _core.tpm_parse_public(b"")
    assert isinstance(info.value, ValueError)


def test_open_is_an_alias_of_open_envelope() -> None:
    assert _core.open is _core.open_envelope
    assert _core.open_envelope.__name__ == "open_envelope"


def test_core_imported_first_raises_the_package_classes() -> None:
    """No import cycle: `_core` first in a fresh interpreter, then a core error."""
    code = textwrap.dedent(
        """
        import nomyo_native._core as core
        try:
            core.ServerPublicKey.from_pem(b"not a key")
        except core.KeyFormatError as exc:
            import nomyo_native.errors as errors
            assert type(exc) is errors.KeyFormatError, type(exc)
            assert isinstance(exc, errors.KeyLoadError)
            print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# Loads `_core` from its file under a stand-in package whose `errors` module defines what
# FAKE_ERRORS says (the classes of a partially initialised or shadowing `nomyo_native.errors`).
LOAD_CORE_UNDER_FAKE_ERRORS = """
import importlib.util, sys, types
core_file = CORE_FILE
package = types.ModuleType("nomyo_native")
package.__path__ = []
sys.modules["nomyo_native"] = package
fake = types.ModuleType("nomyo_native.errors")
exec(FAKE_ERRORS, fake.__dict__)
sys.modules["nomyo_native.errors"] = fake
spec = importlib.util.spec_from_file_location("nomyo_native._core", core_file)
try:
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
except ImportError as exc:
    print("ImportError:", exc)
else:
    print("imported")
"""

# Every class the core raises except the two size errors: those must be checked too.
ALL_BUT_THE_SIZE_ERRORS = """
class CoreError(Exception): pass
CryptoError = EnvelopeError = SizeLimitError = TpmFormatError = CoreError
KeyFormatError = KeyPasswordError = KeyPermissionError = KeyDisposedError = CoreError
"""


@pytest.mark.parametrize(
    ("fake_errors", "missing"),
    [
        ("class CoreError(Exception): pass", "CryptoError"),
        (ALL_BUT_THE_SIZE_ERRORS, "RequestTooLargeError"),
        (ALL_BUT_THE_SIZE_ERRORS + "RequestTooLargeError = dict", "RequestTooLargeError"),
        (
            ALL_BUT_THE_SIZE_ERRORS + "RequestTooLargeError = CoreError\nResponseTooLargeError = 7",
            "ResponseTooLargeError",
        ),
    ],
)
def test_an_errors_module_without_the_cores_classes_is_a_clear_import_error(
    fake_errors: str, missing: str
) -> None:
    """A `nomyo_native.errors` that lacks a class the core raises (or binds the name to something
    that is not an exception class) fails the import with an ImportError naming the class: it
    was a PanicException for the first classes, and for the two size errors an import that
    succeeded and left a raise to fail later."""
    code = LOAD_CORE_UNDER_FAKE_ERRORS.replace("CORE_FILE", repr(_core.__file__)).replace(
        "FAKE_ERRORS", repr(fake_errors)
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ImportError:"), result.stdout + result.stderr[-2000:]
    assert f"nomyo_native.errors.{missing}" in result.stdout
    assert "panicked" not in result.stderr


def test_every_class_is_resolved_at_import_not_at_the_first_raise() -> None:
    """The size errors were looked up in `nomyo_native.errors` on their first raise, while the
    error was being raised: when the module was not there any more then, the process aborted.
    Resolved at import, they are raised as the classes the package defined."""
    result = run_python(
        """
        import sys, types
        from nomyo_native import _core, errors
        kp = _core.ClientKeyPair.generate(2048)
        server = _core.ServerPublicKey.from_pem(kp.public_key_pem)
        sys.modules["nomyo_native.errors"] = types.ModuleType("nomyo_native.errors")
        try:
            _core.seal({"content": "a" * _core.MAX_PLAINTEXT_BYTES}, server)
        except errors.RequestTooLargeError:
            print("request")
        try:
            _core.open_envelope(b" " * (_core.MAX_ENVELOPE_BYTES + 1), kp)
        except errors.ResponseTooLargeError:
            print("response")
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["request", "response"]


def test_a_path_with_a_nul_byte_is_a_value_error_as_pythons_own_file_calls_raise(
    keypair: _core.ClientKeyPair, tmp_path: Path
) -> None:
    """Python's open() (and nomyo 0.2.9's key loading on it) raise ValueError for a path with a
    NUL byte; the core raised OSError with errno 0 ("[Errno 0] file name contained...")."""
    bad = str(tmp_path / "key\0.pem")
    with pytest.raises(ValueError):
        open(bad, "rb")  # what Python itself raises
    with pytest.raises(ValueError) as loading:
        _core.ClientKeyPair.load(bad)
    assert not isinstance(loading.value, OSError)
    with pytest.raises(ValueError) as saving:
        keypair.save(bad, str(tmp_path / "public.pem"))
    assert not isinstance(saving.value, OSError)


def test_file_system_errors_keep_their_errno_and_class(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        _core.ClientKeyPair.load(str(tmp_path / "absent.pem"))
    assert missing.value.errno == errno.ENOENT


@pytest.mark.parametrize("where", ["envelope", "payload"])
def test_a_repeated_member_name_is_named_only_when_it_is_the_protocols(
    keypair: _core.ClientKeyPair, where: str
) -> None:
    """The server chooses member names: a repeated one was echoed whole into the message (any
    length, control characters and all, into the caller's logs). A protocol field is named."""
    name = b"\\u001b[2J" + b"A" * 100_000
    repeated = b'"' + name + b'":1,"' + name + b'":2'
    sealed = _core.seal({"a": 1}, own_server_key(keypair))
    if where == "envelope":
        body = sealed.replace(b"{", b"{" + repeated + b",", 1)
    else:
        opening = b'"encrypted_payload":{'
        assert opening in sealed
        body = sealed.replace(opening, opening + repeated + b",", 1)
    with pytest.raises(errors.EnvelopeError) as info:
        _core.open_envelope(body, keypair)
    message = str(info.value)
    assert "AAAA" not in message
    assert "\x1b" not in message
    assert "u001b" not in message
    assert "repeated" in message or "duplicate" in message
    assert len(message) < 200
    with pytest.raises(errors.EnvelopeError, match="duplicate field `version`"):
        _core.open_envelope(b'{"version":"1.0","version":"1.0"}', keypair)
