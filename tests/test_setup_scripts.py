"""Set-up scripts behind `make demo`/`make test`: a quiet line per step, apt waits for locks."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

# Debian set-up scripts (apt-get, dpkg): run on Linux only.
pytestmark = pytest.mark.linux_only

ROOT = Path(__file__).resolve().parent.parent
QUIETLY = ROOT / "scripts" / "quietly.sh"
APT_INSTALL = ROOT / "scripts" / "apt-install.sh"


def _run(args: list[str], tmp_path: Path, env: dict[str, str] | None = None):
    full_env = {**os.environ, "QUIETLY_LOG_DIR": str(tmp_path / "logs"), **(env or {})}
    return subprocess.run(args, capture_output=True, text=True, env=full_env, check=False)


def test_quiet_setup_step_prints_one_line_and_keeps_the_output_in_a_log(tmp_path: Path) -> None:
    noisy = "for i in $(seq 1 500); do echo pip-chatter-$i; echo err-$i >&2; done"
    proc = _run([str(QUIETLY), "installing things", "bash", "-c", noisy], tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["setup: installing things"]
    assert proc.stderr == ""
    (log,) = (tmp_path / "logs").iterdir()
    assert "pip-chatter-500" in log.read_text() and "err-500" in log.read_text()


def test_quiet_setup_step_failure_shows_the_tail_and_fails(tmp_path: Path) -> None:
    failing = "for i in $(seq 1 100); do echo line-$i; done; exit 3"
    proc = _run([str(QUIETLY), "building", "bash", "-c", failing], tmp_path)
    assert proc.returncode != 0
    assert "FAILED: building" in proc.stderr
    assert "line-100" in proc.stderr and "line-1\n" not in proc.stderr


def _fake_bin(tmp_path: Path, name: str, body: str) -> None:
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_apt_install_waits_for_the_dpkg_and_lists_locks(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    _fake_bin(tmp_path, "dpkg", "exit 1\n")  # nothing installed
    _fake_bin(tmp_path, "apt-get", f'echo "$@" >> {calls}\n')
    _fake_bin(tmp_path, "id", "echo 0\n")
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    proc = _run([str(APT_INSTALL), "swtpm", "nasm"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "setup: installing Debian packages: swtpm nasm"
    update, install = calls.read_text().splitlines()
    for call in (update, install):
        assert "-o DPkg::Lock::Timeout=300" in call
    assert update.split()[-2:] == ["update", "-qq"]
    assert install.split()[-2:] == ["swtpm", "nasm"]


def test_apt_install_does_nothing_when_everything_is_installed(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    _fake_bin(tmp_path, "dpkg", "exit 0\n")
    _fake_bin(tmp_path, "apt-get", f'echo "$@" >> {calls}\n')
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    proc = _run([str(APT_INSTALL), "swtpm"], tmp_path, env)
    assert proc.returncode == 0 and proc.stdout == ""
    assert not calls.exists()
