#!/usr/bin/env python3
"""`make cross-test`: the Rust core's tests on the other platforms, under emulation.

- windows: every cargo test binary (unit, Wycheproof, locked heap) of x86_64-pc-windows-gnu
  (Debian's rustc-web, std built from source) run by wine64, with a stand-in
  bcryptprimitives.dll (scripts/cross/bcryptprimitives.c: Wine 8 lacks ProcessPrng);
- aarch64: the same binaries for aarch64-unknown-linux-gnu run by plain qemu-aarch64 (the
  arm64 loader and libc come from Debian's multiarch libc6:arm64);
- arm64-wheel: the manylinux2014 aarch64 wheel installed, with its dependencies downloaded
  here and installed offline, into an emulated arm64 Debian root (debootstrap, cached in
  .cache/cross/arm64-root) and checked there by scripts/cross/wheel_check.py.

Prints each binary's cargo result line, a summary per part and a closing
"N passed, N failed" line; exits 1 on any failure. Toolchains: scripts/cross-setup.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache/cross"
TOOLCHAIN = os.environ.get("CROSS_TOOLCHAIN", "debian-web")
WINE = Path("/usr/lib/wine/wine64")  # Debian's wine64 (on PATH only with the `wine` package)
ARM64_ROOT = CACHE / "arm64-root"
ARM64_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
RESULT = re.compile(
    r"test result: (ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored; \d+ measured; "
    r"(\d+) filtered out"
)
# Wine keeps no file ACLs of its own: it turns a DACL into Unix mode bits and back (a DACL for
# the user, SYSTEM and Administrators reads back as mode 0775, i.e. Everyone may read). Tests
# that load a key after setting its ACL cannot pass there; they run on real Windows in the
# release workflow (cargo test on windows-2025). Those that refuse broad ACLs run here too.
WINE_SKIPS = (
    "keys::windows::tests::saved_private_key_is_owner_only_and_loads",
    "keys::windows::tests::write_only_or_inherit_only_grants_to_broad_groups_are_not_reads",
    "keys::windows::tests::reference_client_file_with_inherited_owner_system_admin_entries_loads",
)
# Test binaries can take long under emulation (RSA keygen); a hang must still end the run.
RUN_TIMEOUT_S = 3600


@dataclass
class Outcome:
    """Counts for one part (windows, aarch64, arm64-wheel) and what went wrong."""

    name: str
    passed: int = 0
    failed: int = 0
    ignored: int = 0
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.problems


def _log(message: str) -> None:
    print(f"cross-test: {message}", flush=True)


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, check=False, **kw)  # type: ignore[call-overload]


# ---- cargo test binaries ------------------------------------------------------------------


def build_test_binaries(target: str, env: dict[str, str], extra: list[str]) -> list[Path]:
    """`cargo test --no-run` for the target; the test executables it produced."""
    cmd = [
        "cargo", f"+{TOOLCHAIN}", "test", "--release", "--no-default-features", "--no-run",
        "--target", target, "--message-format=json-render-diagnostics", *extra,
    ]  # fmt: skip
    proc = _run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"cargo test --no-run --target {target} failed")
    executables = []
    for line in proc.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            if message["profile"]["test"]:
                executables.append(Path(message["executable"]))
    return executables


def run_test_binaries(
    outcome: Outcome,
    binaries: list[Path],
    runner: list[str],
    env: dict[str, str],
    skips: tuple[str, ...] = (),
) -> None:
    """Run each binary under the emulator (without the tests in `skips`); add up cargo's
    result lines."""
    skip_args = [arg for name in skips for arg in ("--skip", name)]
    if not binaries:
        outcome.problems.append("no test binaries were built")
    for binary in binaries:
        try:
            proc = _run(
                [*runner, str(binary), *skip_args],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            outcome.problems.append(f"{binary.name}: timed out after {RUN_TIMEOUT_S} s")
            continue
        results = RESULT.findall(proc.stdout)
        for _status, passed, failed, ignored, _filtered in results:
            outcome.passed += int(passed)
            outcome.failed += int(failed)
            outcome.ignored += int(ignored)
        outcome.skipped += [name for name in skips if f"test {name} ..." not in proc.stdout]
        summary = "; ".join(
            f"{p} passed, {f} failed, {i} ignored, {x} not run here" for _, p, f, i, x in results
        )
        _log(f"{outcome.name}: {binary.name}: {summary or 'no result line'}")
        if proc.returncode != 0 or not results:
            # Show the failing tests' own output (cargo prints it before the result line).
            print(proc.stdout[-6000:], flush=True)
            outcome.problems.append(f"{binary.name} exited with {proc.returncode}")


def cross_env(target_dir: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CARGO_TARGET_DIR=str(REPO / "target/cross" / target_dir), CARGO_TERM_COLOR="never")
    env.update(extra)
    return env


# ---- windows under wine ---------------------------------------------------------------------


def wine_env() -> dict[str, str]:
    prefix = CACHE / "wine"
    env = cross_env(
        "windows",
        WINEPREFIX=str(prefix),
        WINEDEBUG="-all",
        # No Mono or Gecko install prompts in a headless prefix.
        WINEDLLOVERRIDES="mscoree,mshtml=",
        RUSTC_BOOTSTRAP="1",
    )
    env.pop("DISPLAY", None)
    return env


def prepare_wine(env: dict[str, str]) -> Path:
    """A wine prefix (created once) and the ProcessPrng stand-in DLL."""
    if not WINE.exists():
        raise RuntimeError(f"{WINE} is missing: run scripts/cross-setup.sh")
    prefix = Path(env["WINEPREFIX"])
    if not (prefix / "system.reg").exists():
        _log("windows: creating the wine prefix (once)")
        prefix.parent.mkdir(parents=True, exist_ok=True)
        _run([str(WINE), "wineboot", "--init"], env=env, capture_output=True, timeout=600)
        _run(["/usr/lib/wine/wineserver", "-w"], env=env, timeout=600)
    dll = CACHE / "bcryptprimitives.dll"
    source = REPO / "scripts/cross/bcryptprimitives.c"
    if not dll.exists() or dll.stat().st_mtime < source.stat().st_mtime:
        gcc = ["x86_64-w64-mingw32-gcc", "-shared", "-O2", "-o", str(dll), str(source)]
        subprocess.run([*gcc, "-ladvapi32"], check=True)
    return dll


def test_windows() -> Outcome:
    outcome = Outcome("windows")
    env = wine_env()
    binaries = build_test_binaries("x86_64-pc-windows-gnu", env, ["-Z", "build-std"])
    dll = prepare_wine(env)
    for binary in binaries:  # the application folder is searched first for DLLs
        shutil.copy2(dll, binary.parent / dll.name)
    run_test_binaries(outcome, binaries, [str(WINE)], env, WINE_SKIPS)
    _run(["/usr/lib/wine/wineserver", "-k"], env=env)
    return outcome


# ---- aarch64 under qemu ---------------------------------------------------------------------


def test_aarch64() -> Outcome:
    outcome = Outcome("aarch64")
    env = cross_env(
        "aarch64",
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="aarch64-linux-gnu-gcc",
        CC_aarch64_unknown_linux_gnu="aarch64-linux-gnu-gcc",
    )
    binaries = build_test_binaries("aarch64-unknown-linux-gnu", env, [])
    # Plain qemu-aarch64: its -L with the cross sysroot hangs (that libc6 does not match).
    run_test_binaries(outcome, binaries, ["qemu-aarch64"], env)
    return outcome


# ---- the aarch64 wheel in an emulated Debian ------------------------------------------------


def ensure_arm64_root() -> None:
    if (ARM64_ROOT / "usr/bin/python3").exists():
        return
    _log(f"arm64-wheel: debootstrap of Debian {ARM64_SUITE} arm64 into {ARM64_ROOT} (once)")
    tmp = ARM64_ROOT.with_name("arm64-root.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        "debootstrap", "--arch=arm64", "--variant=minbase",
        "--include=python3,python3-venv,ca-certificates", ARM64_SUITE, str(tmp), DEBIAN_MIRROR,
    ]  # fmt: skip
    log = CACHE / "debootstrap.log"
    with log.open("w") as out:
        if _run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
            raise RuntimeError(f"debootstrap failed (see {log})")
    tmp.rename(ARM64_ROOT)


def arm64_wheel() -> Path:
    house = REPO / ".cache/wheelhouse/manylinux2014-aarch64"
    wheels = sorted(house.glob("*.whl"))
    if not wheels:
        _log("arm64-wheel: building the manylinux2014 aarch64 wheel")
        subprocess.run([str(REPO / "scripts/build_wheels.sh"), "manylinux2014-aarch64"], check=True)
        wheels = sorted(house.glob("*.whl"))
    (wheel,) = wheels
    return wheel


def download_arm64_dependencies(wheel: Path, into: Path) -> None:
    """The wheel's dependencies and the peer's (pyca/cryptography), as arm64 CPython 3.11 wheels."""
    into.mkdir(parents=True, exist_ok=True)
    platforms = ["manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64"]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(into)]
    cmd += ["--python-version", "3.11", "--implementation", "cp"]
    for platform_tag in platforms:
        cmd += ["--platform", platform_tag]
    subprocess.run([*cmd, str(wheel), "cryptography>=42"], check=True)


def test_arm64_wheel() -> Outcome:
    outcome = Outcome("arm64-wheel")
    ensure_arm64_root()
    wheel = arm64_wheel()
    stage = ARM64_ROOT / "opt/nomyo-check"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "wheels").mkdir(parents=True)
    download_arm64_dependencies(wheel, stage / "wheels")
    shutil.copy2(wheel, stage / "wheels")
    for script in (REPO / "scripts/cross/wheel_check.py", REPO / "tests/pyca_envelope.py"):
        shutil.copy2(script, stage)
    inside = "/opt/nomyo-check"
    steps = [
        ["python3", "-m", "venv", f"{inside}/venv"],
        [f"{inside}/venv/bin/python", "-m", "pip", "install", "-q", "--no-index",
         "--find-links", f"{inside}/wheels", "nomyo-native", "cryptography"],
        [f"{inside}/venv/bin/python", "-I", f"{inside}/wheel_check.py"],
    ]  # fmt: skip
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    proc_dir = ARM64_ROOT / "proc"
    mounted = _run(["mount", "-t", "proc", "proc", str(proc_dir)]).returncode == 0
    try:
        for step in steps:
            proc = _run(
                [chroot, str(ARM64_ROOT), *step],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=RUN_TIMEOUT_S,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"},
            )
            print(proc.stdout, end="", flush=True)
            if proc.returncode != 0 and step is not steps[-1]:
                outcome.problems.append(f"`{' '.join(step[:3])}` failed in the arm64 root")
                return outcome
        counts = re.search(r"^(\d+) passed, (\d+) failed$", proc.stdout, re.M)
        if counts is None:
            outcome.problems.append("the wheel check printed no result line")
        else:
            outcome.passed, outcome.failed = int(counts.group(1)), int(counts.group(2))
        if proc.returncode != 0:
            outcome.problems.append(f"the wheel check exited with {proc.returncode}")
    finally:
        if mounted:
            _run(["umount", str(proc_dir)])
    return outcome


PARTS = {"windows": test_windows, "aarch64": test_aarch64, "arm64-wheel": test_arm64_wheel}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", help=f"any of {', '.join(PARTS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    outcomes = []
    for name in args.parts or list(PARTS):
        start = time.monotonic()
        _log(f"{name}: starting")
        try:
            outcome = PARTS[name]()
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            outcome = Outcome(name, problems=[str(exc)])
        outcome.seconds = time.monotonic() - start
        outcomes.append(outcome)
    print("\n==== cross-test summary ====")
    for o in outcomes:
        status = "ok" if o.ok else "FAILED"
        print(
            f"{o.name:12} {status:6} {o.passed} passed, {o.failed} failed, {o.ignored} ignored, "
            f"{len(set(o.skipped))} not run here"
            f" ({o.seconds:.0f} s)"
        )
        for name in sorted(set(o.skipped)):
            print(f"{'':12} not run here: {name}")
        for problem in o.problems:
            print(f"{'':12} problem: {problem}")
    passed = sum(o.passed for o in outcomes)
    failed = sum(o.failed for o in outcomes) + sum(bool(o.problems) for o in outcomes)
    skipped = sum(len(set(o.skipped)) for o in outcomes)
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
