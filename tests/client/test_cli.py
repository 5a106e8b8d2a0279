"""``nomyo-native keys`` and ``nomyo-native chat``, driven through ``main()``."""

from __future__ import annotations

import builtins
import io
import json
import os
import pathlib
import signal
import stat

import pytest
from tests.reference import run_reference
from tests.sigint_race import RUN_CLI, run_python

from nomyo_native.cli import keys as keys_command
from nomyo_native.cli import main

PASSWORD = "cli-password-123"


@pytest.mark.reference
def test_keys_generate_then_show(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NOMYO_KEY_PASSWORD", PASSWORD)
    key_dir = tmp_path / "keys"
    assert main(["keys", "generate", str(key_dir), "--bits", "2048"]) == 0
    out = capsys.readouterr().out
    fingerprint = next(line.split()[-1] for line in out.splitlines() if "fingerprint" in line)
    assert fingerprint.startswith("sha256:") and "encrypted" in out
    assert stat.S_IMODE(os.stat(key_dir / "private_key.pem").st_mode) == 0o600

    # The directory is a nomyo 0.2.9 key directory (loaded by the reference venv's nomyo).
    ref = run_reference(
        "load-keys", {"private": str(key_dir / "private_key.pem"), "password": PASSWORD}
    )
    assert ref["key_size"] == 2048

    assert main(["keys", "show", str(key_dir)]) == 0
    shown = capsys.readouterr().out
    assert fingerprint in shown and "2048 bits" in shown and "mode 600" in shown

    assert main(["keys", "generate", str(key_dir), "--bits", "2048"]) == 2
    assert "exists" in capsys.readouterr().err
    os.chmod(key_dir / "private_key.pem", 0o644)
    assert main(["keys", "show", str(key_dir)]) == 1
    assert "chmod 600" in capsys.readouterr().err


def test_keys_generate_refuses_unencrypted_without_the_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NOMYO_KEY_PASSWORD", raising=False)
    assert main(["keys", "generate", str(tmp_path / "k"), "--bits", "2048"]) == 2
    assert "NOMYO_KEY_PASSWORD" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()
    assert main(["keys", "generate", str(tmp_path / "k"), "--bits", "2048", "--unencrypted"]) == 0
    assert "UNENCRYPTED" in capsys.readouterr().out


def test_keys_show_of_a_missing_dir_is_a_clear_error(tmp_path, capsys):
    assert main(["keys", "show", str(tmp_path / "nope")]) == 2
    assert "nomyo-native keys: error" in capsys.readouterr().err


def test_chat_over_https_with_pin(secure_endpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NOMYO_KEY_PASSWORD", PASSWORD)
    chat_args = [
        "chat",
        "--base-url",
        secure_endpoint.base_url,
        "--ca-bundle",
        str(secure_endpoint.ca_path),
        "--pin",
        secure_endpoint.server_key_fingerprint,
        "--key-dir",
        str(tmp_path / "keys"),
        "--tier",
        "high",
    ]
    assert main([*chat_args, "Bonjour, secure world"]) == 0
    assert capsys.readouterr().out.strip() == "Bonjour, secure world"

    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin"))
    assert main([*chat_args, "--json", "-"]) == 0
    response = json.loads(capsys.readouterr().out)
    assert response["choices"][0]["message"]["content"] == "from stdin"
    assert response["_metadata"]["security_tier"] == "high"


def test_chat_with_a_wrong_pin_fails_with_status_1(secure_endpoint, capsys):
    code = main(
        [
            "chat",
            "--base-url",
            secure_endpoint.base_url,
            "--ca-bundle",
            str(secure_endpoint.ca_path),
            "--pin",
            "sha256:" + "11" * 32,
            "hello",
        ]
    )
    assert code == 1
    assert "SecurityError" in capsys.readouterr().err


@pytest.mark.parametrize("bad_pin", ["md5:abc", "sha256:zz"])
def test_chat_with_a_malformed_pin_is_bad_input(bad_pin, capsys):
    assert main(["chat", "--pin", bad_pin, "hello"]) == 2
    assert "sha256" in capsys.readouterr().err


def test_keys_show_reads_only_the_pem_header_of_the_private_key(tmp_path, capsys, monkeypatch):
    # An unencrypted private key must not become a Python object just to tell its format.
    monkeypatch.delenv("NOMYO_KEY_PASSWORD", raising=False)
    key_dir = tmp_path / "k"
    assert main(["keys", "generate", str(key_dir), "--bits", "2048", "--unencrypted"]) == 0
    capsys.readouterr()
    size = (key_dir / "private_key.pem").stat().st_size
    reads: list[int] = []

    class Spy:
        def __init__(self, handle):
            self.handle = handle

        def read(self, n=-1):
            data = self.handle.read(n)
            reads.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def spying_open(path, *args, **kwargs):
        return Spy(builtins.open(path, *args, **kwargs))

    monkeypatch.setattr(keys_command, "open", spying_open, raising=False)
    real_read_bytes = pathlib.Path.read_bytes

    def guarded_read_bytes(self):
        if self.name == "private_key.pem":
            pytest.fail("the whole private key file was read into Python")
        return real_read_bytes(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", guarded_read_bytes)
    assert main(["keys", "show", str(key_dir)]) == 0
    assert "UNENCRYPTED" in capsys.readouterr().out
    assert reads and max(reads) <= 64 < size


@pytest.mark.skipif(os.name != "posix", reason="a killed-by-signal status is POSIX")
@pytest.mark.parametrize(
    "command",
    [["chat", "--base-url", "https://127.0.0.1:9", "hello"], ["pin", "https://127.0.0.1:9"]],
    ids=["chat", "pin"],
)
def test_ctrl_c_as_the_event_loop_starts_ends_as_an_interrupt(command):
    # Python's own Ctrl-C exit (killed by SIGINT), never a CancelledError escaping asyncio.run
    # when the SIGINT lands right after its handler is installed (CPython 3.11-3.13).
    result = run_python(RUN_CLI, *command, race=True)
    assert result.returncode == -signal.SIGINT, result.stderr
    assert "CancelledError" not in result.stderr and "KeyboardInterrupt" in result.stderr
