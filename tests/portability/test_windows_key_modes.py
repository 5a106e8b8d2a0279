"""On Windows st_mode says 0o666 for any writable file: the CLI's and the endpoint's mode checks
must not refuse every key there (the core checks the file's ACL instead, see
rust/src/keys/windows.rs, tested under wine by `make cross-test`). Simulated here by turning
the modules' MODE_BITS_MEAN_ACCESS off, with a file whose mode is what Windows would report.
"""

from __future__ import annotations

import os

import pytest

from nomyo_native import cli
from nomyo_native.cli import keys as keys_command
from nomyo_native.server import crypto

PASSWORD = "windows-mode-password"


def _key_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NOMYO_KEY_PASSWORD", PASSWORD)
    key_dir = tmp_path / "keys"
    assert cli.main(["keys", "generate", str(key_dir), "--bits", "2048"]) == 0
    os.chmod(key_dir / "private_key.pem", 0o666)  # what st_mode says for any file on Windows
    return key_dir


def test_keys_show_does_not_judge_windows_mode_bits(tmp_path, capsys, monkeypatch):
    key_dir = _key_dir(tmp_path, monkeypatch)
    capsys.readouterr()
    monkeypatch.setattr(keys_command, "MODE_BITS_MEAN_ACCESS", False)
    assert cli.main(["keys", "show", str(key_dir)]) == 0
    out = capsys.readouterr()
    assert "access by ACL, checked on load" in out.out and "chmod" not in out.err


def test_keys_show_still_refuses_open_modes_on_posix(tmp_path, capsys, monkeypatch):
    key_dir = _key_dir(tmp_path, monkeypatch)
    capsys.readouterr()
    monkeypatch.setattr(keys_command, "MODE_BITS_MEAN_ACCESS", True)
    assert cli.main(["keys", "show", str(key_dir)]) == 1
    assert "chmod 600" in capsys.readouterr().err


@pytest.mark.parametrize("posix", [True, False])
def test_server_key_mode_check_applies_on_posix_only(tmp_path, monkeypatch, posix):
    path = tmp_path / "server.pem"
    crypto.ServerKey.generate(2048).save(path, None)
    os.chmod(path, 0o666)
    monkeypatch.setattr(crypto, "MODE_BITS_MEAN_ACCESS", posix)
    if posix:
        with pytest.raises(crypto.ServerKeyFileError, match="chmod 600"):
            crypto.ServerKey.load_or_create(path)
    else:
        assert crypto.ServerKey.load_or_create(path).public_key_pem
