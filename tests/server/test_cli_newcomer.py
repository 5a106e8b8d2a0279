"""``serve``, ``demo`` and ``keys generate`` give a newcomer clear answers (issue 13, items 2, 9).

A missing server extra names the extra; a busy port names the port and ``--port 0``; the
banner says what a restart changes; secrets come from files and the environment, not only
the command line (where ``ps`` shows them); a refused key password leaves nothing behind.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nomyo_native.cli import build_parser, config_from_args, main
from nomyo_native.cli._serve_banner import describe as _describe
from nomyo_native.server import ServerConfig

_BLOCKER = textwrap.dedent(
    """
    import os, sys

    class _HideModules:
        # Pretend the listed top-level modules are not installed.
        hidden = set(os.environ["NOMYO_TEST_HIDE"].split(","))

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in self.hidden:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _HideModules())
    """
)


@pytest.mark.parametrize("hidden", ["starlette", "uvicorn", "cryptography"])
@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["demo", "--no-tpm"]])
def test_serve_and_demo_without_the_server_extra_name_it(tmp_path, hidden, command):
    (tmp_path / "sitecustomize.py").write_text(_BLOCKER)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
        "NOMYO_TEST_HIDE": hidden,
    }
    result = subprocess.run(
        [sys.executable, "-m", "nomyo_native.cli", *command],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode != 0
    assert "pip install 'nomyo-native[server]'" in result.stderr
    assert hidden in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# Modules only the extra's packages import in turn (uvicorn's click, cryptography's cffi
# backend): a broken or partial install misses those as often.
@pytest.mark.parametrize("hidden", ["click", "_cffi_backend"])
@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["demo", "--no-tpm"]])
def test_serve_and_demo_without_a_dependency_of_the_server_extra_name_the_extra(
    tmp_path, hidden, command
):
    test_serve_and_demo_without_the_server_extra_name_it(tmp_path, hidden, command)


def test_serve_on_a_busy_port_names_it_and_suggests_port_0(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"port {port}" in err and "already in use" in err
    assert "--port 0" in err


def test_start_banner_says_a_restart_makes_a_new_key_and_ca(secure_endpoint, tmp_path):
    fresh = _describe(secure_endpoint, ServerConfig(tls_self_signed=True))
    text = "\n".join(fresh)
    assert "new at every start" in text and "--key-file" in text and "--tls-dir" in text
    kept = _describe(
        secure_endpoint,
        ServerConfig(tls_self_signed=True, key_file=tmp_path / "k.pem", tls_dir=tmp_path / "tls"),
    )
    assert not any("new at every start" in line for line in kept)


def test_serve_help_names_every_secret_source(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    for needle in (
        "--api-key-file",
        "--backend-api-key-file",
        "NOMYO_SERVER_API_KEYS",
        "NOMYO_BACKEND_API_KEY",
        "--tpm-state",
        "--allow-open",
        "ps",
    ):
        assert needle in text


def test_api_keys_and_backend_key_come_from_files_and_env(tmp_path, monkeypatch):
    keys = tmp_path / "api-keys"
    keys.write_text("# team keys\nfile-key-1\n\n  file-key-2  \n")
    other = tmp_path / "more-keys"
    other.write_text("file-key-3\n")
    backend = tmp_path / "backend-key"
    backend.write_text("sk-backend-from-file\n")
    monkeypatch.setenv("NOMYO_SERVER_API_KEYS", "env-key")
    monkeypatch.setenv("NOMYO_BACKEND_API_KEY", "sk-backend-from-env")
    argv = ["serve", "--port", "0", "--api-key-file", str(keys), "--api-key-file", str(other)]
    config = config_from_args(
        build_parser().parse_args([*argv, "--backend-api-key-file", str(backend)])
    )
    assert config.api_keys == ("file-key-1", "file-key-2", "file-key-3", "env-key")
    assert config.backend_api_key == "sk-backend-from-file"
    # Without a flag or file, the environment supplies the backend key.
    assert config_from_args(build_parser().parse_args(argv)).backend_api_key == (
        "sk-backend-from-env"
    )


def test_unusable_secret_files_are_clear_errors_without_their_content(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.write_text("# nothing here\n")
    assert main(["serve", "--port", "0", "--api-key-file", str(empty)]) == 2
    assert "holds no key" in capsys.readouterr().err
    assert main(["serve", "--port", "0", "--api-key-file", str(tmp_path / "missing")]) == 2
    assert "cannot read API key file" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.write_text("sk-secret with-a-space\n")
    assert main(["serve", "--port", "0", "--api-key-file", str(bad)]) == 2
    assert "sk-secret" not in capsys.readouterr().err
    backend = tmp_path / "backend"
    backend.write_text("sk-b")
    both = ["--backend-api-key", "x", "--backend-api-key-file", str(backend)]
    assert main(["serve", "--port", "0", *both]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.parametrize("depth", [1, 3])
def test_keys_generate_with_a_refused_password_leaves_no_directory(
    tmp_path, monkeypatch, capsys, depth
):
    monkeypatch.setenv("NOMYO_KEY_PASSWORD", "short")
    target = tmp_path.joinpath(*[f"level{i}" for i in range(depth)])
    assert main(["keys", "generate", str(target), "--bits", "2048"]) == 2
    assert "too short" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    # An existing directory is left in place, with what it held.
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    assert main(["keys", "generate", str(existing / "keys"), "--bits", "2048"]) == 2
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]
    assert Path(existing).is_dir()


def test_start_banner_states_the_client_limits(http_endpoint):
    config = ServerConfig(header_timeout=7, body_timeout=9, max_connections=33)
    (line,) = [line for line in _describe(http_endpoint, config) if "client limits" in line]
    assert "headers 7 s" in line and "body pauses 9 s" in line and "33 connections" in line
    assert "64 MiB" in line


def test_start_banner_warns_when_connections_exceed_the_open_file_limit(http_endpoint, monkeypatch):
    from nomyo_native.cli import _serve_banner

    monkeypatch.setattr(_serve_banner, "_open_file_limit", lambda: 100)
    lines = _describe(http_endpoint, ServerConfig(max_connections=256))
    assert any("open-file limit 100" in line for line in lines)
    assert not any(
        "open-file limit" in line
        for line in _describe(http_endpoint, ServerConfig(max_connections=20))
    )
