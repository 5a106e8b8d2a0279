"""What the endpoint leaves behind when it stops (issue 10, item 14) and the TPM state it keeps.

swtpm must die with the endpoint however the endpoint ends (SIGTERM, SIGKILL, an owner
process killed), the temporary ``nomyo-swtpm-*``/``nomyo-tls-*`` directories are removed on
every exit path the process reaches, and ``--tpm-state DIR`` is private and never deleted.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.sigint_race import RUN_CLI, run_python

from nomyo_native.server import ServerConfig

from .test_cli import _read_banner

# The swtpm marker (deselected where swtpm is absent) and a skip without the binary.
SWTPM_MARKS = [
    pytest.mark.swtpm,
    pytest.mark.skipif(shutil.which("swtpm") is None, reason="swtpm is not installed"),
]


def needs_swtpm(test: Callable[..., None]) -> Callable[..., None]:
    """``SWTPM_MARKS`` on a test."""
    for mark in SWTPM_MARKS:
        test = mark(test)
    return test


PERSISTENT_HANDLE = 0x81000010


def _live_swtpm_pids(marker: Path) -> list[int]:
    """Running (not zombie) swtpm processes whose command line mentions ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if (
            os.path.basename(argv[0]) == b"swtpm"
            and str(marker).encode() in b" ".join(argv)
            and state != "Z"
        ):
            pids.append(int(entry))
    return pids


def _eventually(predicate: Callable[[], bool], within: float = 60.0) -> bool:
    """Poll ``predicate`` until true or ``within`` seconds passed (a bound, not a speed test)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _leftovers(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.iterdir() if p.name.startswith("nomyo-"))


def _esapi(tcti: str) -> tuple[Any, Any, Any]:
    tss = pytest.importorskip("tpm2_pytss")
    name, _, conf = tcti.partition(":")
    tcti_ctx = tss.TCTILdr(name, conf)
    return tss, tcti_ctx, tss.ESAPI(tcti_ctx)


def _persistent_handles(tcti: str) -> list[int]:
    tss, tcti_ctx, esapi = _esapi(tcti)
    try:
        _, data = esapi.get_capability(
            tss.constants.TPM2_CAP.HANDLES, tss.constants.TPM2_HC.PERSISTENT_FIRST, 64
        )
        return [int(handle) for handle in data.data.handles]
    finally:
        esapi.close()
        tcti_ctx.close()


def _make_persistent_key(tcti: str) -> None:
    tss, tcti_ctx, esapi = _esapi(tcti)
    try:
        attrs = tss.constants.TPMA_OBJECT
        template = tss.types.TPMT_PUBLIC.parse(
            "ecc256:ecdsa-sha256:null",
            objectAttributes=attrs.SIGN_ENCRYPT
            | attrs.FIXEDTPM
            | attrs.FIXEDPARENT
            | attrs.SENSITIVEDATAORIGIN
            | attrs.USERWITHAUTH,
        )
        public = tss.types.TPM2B_PUBLIC(publicArea=template)
        handle, *_ = esapi.create_primary(None, public, tss.constants.ESYS_TR.OWNER)
        esapi.evict_control(tss.constants.ESYS_TR.OWNER, handle, PERSISTENT_HANDLE)
        esapi.flush_context(handle)
    finally:
        esapi.close()
        tcti_ctx.close()


@needs_swtpm
def test_tpm_state_dir_is_private_and_kept_across_restarts(tmp_path):
    from nomyo_native.server.tpm import SwtpmProcess

    state = tmp_path / "tpm-state"
    with SwtpmProcess(state_dir=state) as swtpm:
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
        _make_persistent_key(swtpm.tcti)
    # Stopping keeps the state the user asked for; the TPM's state files are private too
    # (swtpm's empty .lock file is 0640, inside the 0700 directory).
    files = list(state.glob("tpm2-*"))
    assert files
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    with SwtpmProcess(state_dir=state) as swtpm:
        assert PERSISTENT_HANDLE in _persistent_handles(swtpm.tcti)
    assert state.is_dir()


@needs_swtpm
def test_tpm_state_dir_open_to_others_or_a_symlink_is_refused(tmp_path):
    from nomyo_native.server.tpm import SwtpmProcess, TpmError

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(TpmError, match="open to group or others"):
        SwtpmProcess(state_dir=shared).start()
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(TpmError, match="symlink"):
        SwtpmProcess(state_dir=link).start()
    assert _live_swtpm_pids(tmp_path) == []


@needs_swtpm
def test_tpm_state_dir_in_use_by_another_swtpm_is_a_clear_error(tmp_path):
    from nomyo_native.server.tpm import SwtpmProcess, TpmError

    state = tmp_path / "state"
    with SwtpmProcess(state_dir=state):
        with pytest.raises(TpmError, match="swtpm did not start"):
            SwtpmProcess(state_dir=state, start_timeout=5).start()
    assert state.is_dir()


def test_tpm_state_needs_an_owned_swtpm(tmp_path):
    with pytest.raises(ValueError, match="--tpm-state"):
        ServerConfig(tpm="none", tpm_state=tmp_path)
    with pytest.raises(ValueError, match="--tpm-state"):
        ServerConfig(tpm="tcti:device:/dev/tpmrm0", tpm_state=tmp_path)


@needs_swtpm
def test_swtpm_dies_with_a_killed_owner_and_its_temp_state_goes(tmp_path):
    owner_tmp = tmp_path / "tmp"
    owner_tmp.mkdir()
    script = textwrap.dedent(
        """
        import sys, time
        from nomyo_native.server.tpm import SwtpmProcess
        swtpm = SwtpmProcess().start()
        print(swtpm.state_dir, flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(owner_tmp)},
    )
    try:
        state_dir = Path(owner.stdout.readline().strip())
        assert state_dir.parent == owner_tmp and state_dir.is_dir()
        assert len(_live_swtpm_pids(owner_tmp)) == 1
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()
    assert _eventually(lambda: not _live_swtpm_pids(owner_tmp)), "swtpm outlived its owner"
    assert _eventually(lambda: not state_dir.exists()), "temporary TPM state left behind"


def _start_serve(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], Path, dict]:
    server_tmp = tmp_path / "tmp"
    server_tmp.mkdir()
    stderr = (tmp_path / "stderr.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "nomyo_native.cli", "serve", "--port", "0",
            "--tls-self-signed", "--tpm", "swtpm", *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "TMPDIR": str(server_tmp)},
    )  # fmt: skip
    stderr.close()
    try:
        banner = _read_banner(process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, server_tmp, banner


@needs_swtpm
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT])
def test_serve_terminated_leaves_no_swtpm_and_no_temp_dirs(tmp_path, signum):
    process, server_tmp, banner = _start_serve(tmp_path)
    try:
        assert banner["TPM attestation"].startswith("swtpm")
        assert len(_live_swtpm_pids(server_tmp)) == 1
        created = _leftovers(server_tmp)
        assert any(name.startswith("nomyo-tls-") for name in created)
        assert any(name.startswith("nomyo-swtpm-") for name in created)
        # The directory holding the TLS private key is private.
        tls_dir = Path(banner["TLS CA (trust)"]).parent
        assert stat.S_IMODE(os.stat(tls_dir).st_mode) == 0o700
        # The throwaway TLS key left the disk once loaded; only public files stay.
        assert sorted(p.name for p in tls_dir.iterdir()) == ["ca.pem", "server.pem"]
        process.send_signal(signum)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    assert code == 0, (tmp_path / "stderr.log").read_text()
    assert _live_swtpm_pids(server_tmp) == []
    assert _leftovers(server_tmp) == []


@needs_swtpm
@pytest.mark.slow
def test_serve_killed_leaves_no_swtpm(tmp_path):
    process, server_tmp, _ = _start_serve(tmp_path)
    try:
        assert len(_live_swtpm_pids(server_tmp)) == 1
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    assert _eventually(lambda: not _live_swtpm_pids(server_tmp)), "swtpm outlived serve"
    # The guards also remove the temporary TPM state and TLS directories.
    assert _eventually(lambda: _leftovers(server_tmp) == []), _leftovers(server_tmp)


@needs_swtpm
@pytest.mark.slow
def test_serve_keeps_tpm_state_across_restarts(tmp_path):
    state = tmp_path / "kept-state"
    process, server_tmp, banner = _start_serve(tmp_path, "--tpm-state", str(state))
    try:
        assert str(state) in banner["TPM state"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        process.stdout.close()
    assert state.is_dir() and any(state.iterdir())
    assert _leftovers(server_tmp) == []


@pytest.mark.skipif(os.name != "posix", reason="exit guards are POSIX")
def test_killed_library_endpoint_leaves_no_temp_dirs(tmp_path):
    owner_tmp = tmp_path / "tmp"
    owner_tmp.mkdir()
    script = textwrap.dedent(
        """
        import time
        from nomyo_native.server import ServerConfig, ServerKey, start_server
        from cryptography.hazmat.primitives.asymmetric import rsa
        key = ServerKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        endpoint = start_server(ServerConfig(port=0, server_key=key, tls_self_signed=True))
        print(endpoint.ca_path, flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(owner_tmp)},
    )
    try:
        ca_path = Path(owner.stdout.readline().strip())
        assert ca_path.parent.parent == owner_tmp and ca_path.is_file()
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()
    assert _eventually(lambda: _leftovers(owner_tmp) == []), _leftovers(owner_tmp)


def _demo_stopped_by(
    tmp_path: Path, signum: int, *extra: str, sigint: Any = signal.SIG_DFL
) -> tuple[int, str, Path]:
    """Run ``demo`` with its own TMPDIR, send ``signum`` as soon as its endpoint is up (the
    client's 4096-bit key generation still lies ahead), and return its exit status, output
    and TMPDIR.

    The demo starts with SIGINT's disposition ``sigint``, whatever this test run inherited: a
    run started in the background by a script ignores SIGINT, and so would its children.
    """
    demo_tmp = tmp_path / "tmp"
    demo_tmp.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "nomyo_native.cli", "demo", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TMPDIR": str(demo_tmp)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )
    output = ""
    try:
        while "TLS CA" not in output:
            line = process.stdout.readline()
            assert line, f"demo ended before its endpoint was up: {output}"
            output += line
        assert _leftovers(demo_tmp), "the demo's endpoint made no temporary directory"
        process.send_signal(signum)
        output += process.stdout.read()
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    # Stopped, not finished: otherwise this test would prove nothing.
    assert "reply " not in output, "the demo finished before the signal"
    return code, output, demo_tmp


@pytest.mark.skipif(os.name != "posix", reason="exit guards are POSIX")
@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGKILL]
)
def test_demo_stopped_leaves_no_tls_key_or_temp_dir(tmp_path, signum):
    code, output, demo_tmp = _demo_stopped_by(tmp_path, signum, "--no-tpm")
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        # Unwound through the cleanup (an interrupted request may still be logged).
        assert code in (0, 130), output
    assert _eventually(lambda: _leftovers(demo_tmp) == []), _leftovers(demo_tmp)


@pytest.mark.skipif(os.name != "posix", reason="exit guards are POSIX")
@pytest.mark.parametrize(
    "command, status",
    [
        (["demo", "--no-tpm"], 130),
        (["serve", "--port", "0", "--tls-self-signed", "--tpm", "none"], 0),
    ],
    ids=["demo", "serve"],
)
def test_ctrl_c_as_the_event_loop_starts_is_an_interrupt(tmp_path, command, status):
    # The SIGINT lands right after the handler that turns it into a cancellation is installed:
    # asyncio.run (CPython 3.11-3.13) forgets it there, and a CancelledError traceback ended the
    # demo with status 1 (a CI run once hit this with a real signal).
    result = run_python(RUN_CLI, *command, race=True, TMPDIR=str(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == status, output
    assert "Traceback" not in output, output
    assert _eventually(lambda: _leftovers(tmp_path) == []), _leftovers(tmp_path)


# Prepended to serve's code: a SIGINT as soon as the start-up banner is out, the earliest a
# caller waiting for the banner can send one (test_serve_terminated_... sends it about then).
BANNER_THEN_SIGINT = """
import builtins as _builtins, signal as _signal
_print = _builtins.print
def _print_then_interrupt(*args, **kwargs):
    _print(*args, **kwargs)
    if any("tier policy" in str(arg) for arg in args):
        _signal.raise_signal(_signal.SIGINT)
_builtins.print = _print_then_interrupt
"""

_SWTPM = pytest.param("swtpm", marks=[*SWTPM_MARKS, pytest.mark.slow])


@pytest.mark.skipif(os.name != "posix", reason="exit guards are POSIX")
@pytest.mark.parametrize("tpm", ["none", _SWTPM])
@pytest.mark.parametrize(
    "sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["sigint-default", "sigint-ignored"]
)
def test_serve_stops_on_a_sigint_sent_as_its_banner_appears(tmp_path, tpm, sigint):
    # Started with SIGINT ignored (a script's background job: a CI run once), serve ignored a
    # SIGINT that came before uvicorn took SIGINT over for its serving, and ran on forever.
    try:
        result = run_python(
            BANNER_THEN_SIGINT + RUN_CLI,
            *("serve", "--port", "0", "--tls-self-signed", "--tpm", tpm),
            sigint=sigint,
            TMPDIR=str(tmp_path),
        )
    except subprocess.TimeoutExpired:
        pytest.fail("serve did not stop within 60 s of a SIGINT sent as its banner appeared")
    output = result.stdout + result.stderr
    assert "tier policy" in result.stdout, output
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    assert _eventually(lambda: not _live_swtpm_pids(tmp_path)), "swtpm outlived serve"
    assert _eventually(lambda: _leftovers(tmp_path) == []), _leftovers(tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="exit guards are POSIX")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT])
def test_demo_started_with_sigint_ignored_still_stops_on_termination(tmp_path, signum):
    # Its SIGINT ignored from the start (nohup, a script's background job): the termination
    # signals, which the demo turns into an interrupt, must not be lost with it.
    code, output, demo_tmp = _demo_stopped_by(tmp_path, signum, "--no-tpm", sigint=signal.SIG_IGN)
    assert code == 130, output
    assert _eventually(lambda: _leftovers(demo_tmp) == []), _leftovers(demo_tmp)


@needs_swtpm
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_demo_stopped_leaves_no_swtpm(tmp_path, signum):
    _, _, demo_tmp = _demo_stopped_by(tmp_path, signum)
    assert _eventually(lambda: not _live_swtpm_pids(demo_tmp)), "swtpm outlived the demo"
    assert _eventually(lambda: _leftovers(demo_tmp) == []), _leftovers(demo_tmp)
