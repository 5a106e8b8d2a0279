"""scripts/inspect_wheel.py: each rule refuses what it exists for, and passes what is right.

The policy is tested on parsed facts (every platform, no binaries needed); the parsers on real
binaries compiled here: ELF by the host C compiler, PE by MinGW-w64 and Mach-O by zig (both
installed by the wheel set-up; those tests skip without them). The real wheels are inspected by
tests/test_wheel.py (make test) and by `make wheels`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

# getenv is GLIBC_2.2.5 on x86_64: far below the manylinux2014 floor.
MODULE_C = '#include <stdlib.h>\nvoid *PyInit__core(void) { return getenv("NOMYO_X"); }\n'
# getrandom() is GLIBC_2.25: a module calling it cannot be manylinux2014 (glibc 2.17).
MODULE_NEW_GLIBC_C = (
    "#include <sys/random.h>\n"
    "void *PyInit__core(void) { char b[4]; getrandom(b, 4, 0); return 0; }\n"
)


def _facts(inspector: ModuleType, **kw: object) -> object:
    base = {"fmt": "elf", "archs": frozenset({"x86_64"}), "needed": ("libc.so.6",)}
    base.update(kw)
    return inspector.BinaryFacts(**base)


def _errors(inspector: ModuleType, tag: str, facts: object) -> list[str]:
    report = inspector.Report("t")
    inspector.check_binary(tag, facts, report)
    return report.errors


# ---- policy: Linux ------------------------------------------------------------------------


def test_manylinux2014_accepts_glibc_2_17(inspector):
    facts = _facts(inspector, glibc_versions=((2, 2, 5), (2, 14), (2, 17)))
    assert _errors(inspector, "manylinux2014_x86_64", facts) == []
    assert _errors(inspector, "manylinux_2_17_x86_64", facts) == []


@pytest.mark.parametrize("too_new", [(2, 18), (2, 25), (2, 34), (3, 0)])
def test_manylinux2014_refuses_symbols_above_glibc_2_17(inspector, too_new):
    facts = _facts(inspector, glibc_versions=((2, 2, 5), too_new))
    (error,) = _errors(inspector, "manylinux2014_x86_64", facts)
    assert "GLIBC_" + ".".join(map(str, too_new)) in error


def test_manylinux_floor_follows_the_tag(inspector):
    facts = _facts(inspector, glibc_versions=((2, 28),))
    assert _errors(inspector, "manylinux_2_28_x86_64", facts) == []
    assert _errors(inspector, "manylinux_2_27_x86_64", facts)


def test_manylinux_refuses_no_glibc_at_all(inspector):
    assert _errors(inspector, "manylinux2014_x86_64", _facts(inspector, glibc_versions=()))


@pytest.mark.parametrize(
    ("tag", "arch"), [("manylinux2014_x86_64", "aarch64"), ("manylinux2014_aarch64", "x86_64")]
)
def test_linux_refuses_the_wrong_architecture(inspector, tag, arch):
    facts = _facts(inspector, archs=frozenset({arch}), glibc_versions=((2, 17),))
    assert any("architecture" in e for e in _errors(inspector, tag, facts))


@pytest.mark.parametrize("lib", ["libpython3.11.so.1.0", "libssl.so.3", "libstdc++.so.6"])
def test_manylinux_refuses_libraries_outside_the_policy(inspector, lib):
    facts = _facts(inspector, needed=("libc.so.6", lib), glibc_versions=((2, 17),))
    assert _errors(inspector, "manylinux2014_x86_64", facts)


def test_linux_refuses_a_module_without_its_init_export(inspector):
    facts = _facts(inspector, glibc_versions=((2, 17),), exports_init=False)
    assert any("PyInit__core" in e for e in _errors(inspector, "manylinux2014_x86_64", facts))


def test_musllinux_accepts_musl_and_refuses_glibc(inspector):
    musl = _facts(inspector, needed=("libc.so",))
    assert _errors(inspector, "musllinux_1_2_x86_64", musl) == []
    glibc = _facts(inspector, needed=("libc.so.6",), glibc_versions=((2, 17),))
    assert len(_errors(inspector, "musllinux_1_2_x86_64", glibc)) == 2


def test_linux_tag_refuses_a_non_elf_module(inspector):
    facts = _facts(inspector, fmt="pe", needed=("python3.dll",))
    assert _errors(inspector, "manylinux2014_x86_64", facts)


# ---- policy: Windows ----------------------------------------------------------------------


def _pe(inspector: ModuleType, *dlls: str, machine: str = "x86_64") -> object:
    return _facts(inspector, fmt="pe", archs=frozenset({machine}), needed=dlls)


def test_windows_accepts_python3_dll_and_system_dlls(inspector):
    facts = _pe(
        inspector, "python3.dll", "KERNEL32.dll", "ntdll.dll", "bcryptprimitives.dll",
        "api-ms-win-core-synch-l1-2-0.dll", "VCRUNTIME140.dll", "api-ms-win-crt-heap-l1-1-0.dll",
    )  # fmt: skip
    assert _errors(inspector, "win_amd64", facts) == []


@pytest.mark.parametrize(
    "dll", ["libgcc_s_seh-1.dll", "libwinpthread-1.dll", "libstdc++-6.dll", "libssp-0.dll"]
)
def test_windows_refuses_the_mingw_runtime(inspector, dll):
    (error,) = _errors(inspector, "win_amd64", _pe(inspector, "python3.dll", "kernel32.dll", dll))
    assert "MinGW" in error


@pytest.mark.parametrize("dll", ["python311.dll", "python313.dll"])
def test_windows_refuses_a_version_specific_python_dll(inspector, dll):
    errors = _errors(inspector, "win_amd64", _pe(inspector, "python3.dll", dll))
    assert any("abi3" in e for e in errors)


def test_windows_refuses_a_module_without_python3_dll(inspector):
    assert _errors(inspector, "win_amd64", _pe(inspector, "kernel32.dll"))


def test_windows_refuses_an_unknown_dll_and_the_wrong_machine(inspector):
    assert _errors(inspector, "win_amd64", _pe(inspector, "python3.dll", "libcrypto-3-x64.dll"))
    assert _errors(inspector, "win_amd64", _pe(inspector, "python3.dll", machine="aarch64"))


# ---- policy: macOS ------------------------------------------------------------------------


def _macho(inspector: ModuleType, archs: set[str], minos: tuple[int, ...], *libs: str) -> object:
    return _facts(
        inspector,
        fmt="macho",
        archs=frozenset(archs),
        needed=libs or ("/usr/lib/libSystem.B.dylib",),
        min_macos=minos,
    )


def test_macos_accepts_system_libraries_within_the_deployment_target(inspector):
    libs = ("/usr/lib/libSystem.B.dylib", "/System/Library/Frameworks/Security.framework/Security")
    assert (
        _errors(inspector, "macosx_10_12_x86_64", _macho(inspector, {"x86_64"}, (10, 12), *libs))
        == []
    )
    arm = _macho(inspector, {"aarch64"}, (11, 0))
    assert _errors(inspector, "macosx_11_0_arm64", arm) == []


def test_macos_refuses_a_binary_newer_than_its_tag(inspector):
    facts = _macho(inspector, {"x86_64"}, (11, 0))
    assert any("newer" in e for e in _errors(inspector, "macosx_10_12_x86_64", facts))


@pytest.mark.parametrize(
    "lib",
    [
        "/Library/Frameworks/Python.framework/Versions/3.11/Python",
        "/opt/homebrew/lib/libssl.3.dylib",
        "@rpath/libpython3.11.dylib",
    ],
)
def test_macos_refuses_non_system_and_python_libraries(inspector, lib):
    facts = _macho(inspector, {"aarch64"}, (11, 0), "/usr/lib/libSystem.B.dylib", lib)
    assert _errors(inspector, "macosx_11_0_arm64", facts)


def test_macos_universal2_needs_both_architectures(inspector):
    assert _errors(inspector, "macosx_10_12_universal2", _macho(inspector, {"x86_64"}, (10, 12)))
    both = _macho(inspector, {"x86_64", "aarch64"}, (10, 12))
    assert _errors(inspector, "macosx_10_12_universal2", both) == []


def test_unknown_platform_tag_is_refused(inspector):
    assert _errors(inspector, "linux_x86_64", _facts(inspector, glibc_versions=((2, 17),)))


# ---- parsers on real binaries -------------------------------------------------------------


def _compile_elf(tmp_path: Path, source: str, name: str = "mod.so") -> bytes:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / name
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(src)], check=True)
    return out.read_bytes()


def test_elf_parser_reads_arch_needed_glibc_and_export(inspector, tmp_path):
    facts = inspector.binary_facts(_compile_elf(tmp_path, MODULE_NEW_GLIBC_C))
    assert facts.fmt == "elf"
    assert facts.archs == {inspector.ELF_MACHINE["EM_X86_64"]} or len(facts.archs) == 1
    assert "libc.so.6" in facts.needed
    assert (2, 25) in facts.glibc_versions  # getrandom@GLIBC_2.25
    assert facts.exports_init
    assert _errors(inspector, "manylinux2014_x86_64", facts)


def test_elf_parser_sees_a_missing_init_export(inspector, tmp_path):
    facts = inspector.binary_facts(_compile_elf(tmp_path, "int other(void) { return 1; }\n"))
    assert not facts.exports_init


def _zig_cc(tmp_path: Path, target: str, name: str, *flags: str) -> bytes:
    pytest.importorskip("ziglang", reason="zig comes with the wheel tools (make wheel)")
    src = tmp_path / f"{name}.c"
    src.write_text(MODULE_C)
    out = tmp_path / name
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", target, "-shared", "-o", str(out)]
    subprocess.run([*cmd, *flags, str(src)], check=True, cwd=tmp_path, capture_output=True)
    return out.read_bytes()


def _mingw_pyd(tmp_path: Path, source: str, *libs: str) -> bytes:
    """A DLL built by MinGW-w64 (installed by scripts/cross-setup.sh), importing python3.dll
    through an import library made here from a .def file."""
    gcc, dlltool = (
        shutil.which("x86_64-w64-mingw32-gcc"),
        shutil.which("x86_64-w64-mingw32-dlltool"),
    )
    if gcc is None or dlltool is None:
        pytest.skip("MinGW-w64 is not installed (make cross-deps)")
    (tmp_path / "python3.def").write_text("EXPORTS\nPyLong_FromLong\n")
    implib = tmp_path / "libpython3.a"
    subprocess.run(
        [dlltool, "-d", "python3.def", "-l", str(implib), "-D", "python3.dll"],
        check=True,
        cwd=tmp_path,
    )
    (tmp_path / "mod.c").write_text(source)
    out = tmp_path / "mod.pyd"
    subprocess.run(
        [gcc, "-shared", "-o", str(out), "mod.c", str(implib), *libs], check=True, cwd=tmp_path
    )
    return out.read_bytes()


PYD_C = (
    "void *PyLong_FromLong(long);\n"
    "__declspec(dllexport) void *PyInit__core(void) { return PyLong_FromLong(1); }\n"
)
PYD_WINPTHREAD_C = (
    "#include <pthread.h>\n"
    "void *PyLong_FromLong(long);\n"
    "__declspec(dllexport) void *PyInit__core(void)\n"
    "{ return PyLong_FromLong((long)pthread_self()); }\n"
)


def test_pe_parser_reads_machine_imports_and_export(inspector, tmp_path):
    facts = inspector.binary_facts(_mingw_pyd(tmp_path, PYD_C))
    assert facts.fmt == "pe"
    assert facts.archs == {"x86_64"}
    assert facts.exports_init
    assert "python3.dll" in facts.needed
    assert _errors(inspector, "win_amd64", facts) == []


def test_pe_parser_finds_the_mingw_runtime_in_a_real_dll(inspector, tmp_path):
    facts = inspector.binary_facts(_mingw_pyd(tmp_path, PYD_WINPTHREAD_C, "-lpthread"))
    assert "libwinpthread-1.dll" in facts.needed
    assert any("MinGW" in e for e in _errors(inspector, "win_amd64", facts))


@pytest.mark.parametrize(
    ("target", "arch"), [("x86_64-macos.10.12", "x86_64"), ("aarch64-macos.11.0", "aarch64")]
)
def test_macho_parser_reads_arch_dylibs_and_minimum_os(inspector, tmp_path, target, arch):
    facts = inspector.binary_facts(_zig_cc(tmp_path, target, "mod.so"))
    assert facts.fmt == "macho"
    assert facts.archs == {arch}
    assert "/usr/lib/libSystem.B.dylib" in facts.needed
    assert facts.min_macos == ((10, 12) if arch == "x86_64" else (11, 0))
    assert facts.exports_init


def test_macho_parser_sees_a_missing_init_export(inspector, tmp_path):
    (tmp_path / "other.c").write_text("int other(void) { return 1; }\n")
    pytest.importorskip("ziglang", reason="zig comes with the wheel tools (make wheel)")
    out = tmp_path / "other.so"
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "aarch64-macos.11.0", "-shared"]
    subprocess.run([*cmd, "-o", str(out), str(tmp_path / "other.c")], check=True, cwd=tmp_path)
    facts = inspector.binary_facts(out.read_bytes())
    assert not facts.exports_init
    assert any("PyInit__core" in e for e in _errors(inspector, "macosx_11_0_arm64", facts))


def test_unknown_magic_is_refused(inspector):
    with pytest.raises(inspector.InspectionError):
        inspector.binary_facts(b"#!/bin/sh\necho not a module\n")


# ---- wheel structure ----------------------------------------------------------------------


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(
    directory: Path,
    module: bytes,
    *,
    platform: str = "manylinux2014_x86_64",
    python_tag: str = "cp311",
    module_name: str = "nomyo_native/_core.abi3.so",
    wheel_tags: list[str] | None = None,
    requires_python: str = ">=3.11",
    with_stub: bool = True,
    tamper_record: bool = False,
) -> Path:
    """A wheel laid out as maturin lays ours out, around the given native module."""
    info = "nomyo_native-0.1.0.dist-info"
    tags = wheel_tags or [f"{python_tag}-abi3-{platform}"]
    files = {
        "nomyo_native/__init__.py": b"",
        module_name: module,
        f"{info}/METADATA": (
            f"Metadata-Version: 2.4\nName: nomyo-native\nVersion: 0.1.0\n"
            f"Requires-Python: {requires_python}\n"
        ).encode(),
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
            + "".join(f"Tag: {t}\n" for t in tags)
        ).encode(),
    }
    if with_stub:
        files["nomyo_native/_core.pyi"] = b"def seal() -> None: ...\n"
    record = [_record_line(n, d) for n, d in files.items()]
    if tamper_record:
        files[module_name] = module + b"\0"
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record).encode()
    path = directory / f"nomyo_native-0.1.0-{python_tag}-abi3-{platform}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def good_elf(tmp_path: Path) -> bytes:
    return _compile_elf(tmp_path, MODULE_C, "good.so")


def test_well_formed_wheel_passes(inspector, tmp_path, good_elf):
    report = inspector.inspect(make_wheel(tmp_path, good_elf))
    assert report.ok, report.errors
    assert any("glibc floor 2." in f for f in report.facts)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tamper_record": True}, "RECORD"),
        ({"python_tag": "cp310"}, "expected cp311-abi3"),
        ({"requires_python": ">=3.10"}, "Requires-Python"),
        ({"wheel_tags": ["cp311-abi3-manylinux_2_34_x86_64"]}, "WHEEL tags"),
        ({"with_stub": False}, "_core.pyi"),
        ({"module_name": "nomyo_native/_core.cpython-311-x86_64-linux-gnu.so"}, ".abi3.so"),
        ({"platform": "win_amd64", "module_name": "nomyo_native/_core.pyd"}, "not PE"),
    ],
)
def test_malformed_wheels_are_refused(inspector, tmp_path, good_elf, change, expected):
    report = inspector.inspect(make_wheel(tmp_path, good_elf, **change))
    assert not report.ok
    assert any(expected in e for e in report.errors), report.errors


def test_wheel_with_too_new_glibc_is_refused(inspector, tmp_path):
    module = _compile_elf(tmp_path, MODULE_NEW_GLIBC_C)
    report = inspector.inspect(make_wheel(tmp_path, module))
    assert any("GLIBC_2.25" in e for e in report.errors), report.errors


def _sdist(tmp_path: Path, *, skip: str = "", requires: str = ">=3.11") -> Path:
    path = tmp_path / "nomyo_native-0.1.0.tar.gz"
    root = "nomyo_native-0.1.0"
    members = {
        "pyproject.toml": b"",
        "Cargo.toml": b"",
        "Cargo.lock": b"",
        "rust/src/lib.rs": b"",
        "python/nomyo_native/__init__.py": b"",
        "PKG-INFO": f"Metadata-Version: 2.4\nRequires-Python: {requires}\n".encode(),
    }
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            if name == skip:
                continue
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_sdist_checks(inspector, tmp_path):
    assert inspector.inspect(_sdist(tmp_path)).ok
    assert not inspector.inspect(_sdist(tmp_path, skip="Cargo.lock")).ok
    assert not inspector.inspect(_sdist(tmp_path, requires=">=3.10")).ok


def test_cli_exit_status_and_summary(inspector, tmp_path, good_elf, capsys):
    good = make_wheel(tmp_path, good_elf)
    assert inspector.main([str(good)]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out
    assert inspector.main([str(good), "--expect", "2"]) == 1
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    make_wheel(bad_dir, good_elf, tamper_record=True)
    assert inspector.main([str(bad_dir)]) == 1
    assert "0 passed, 1 failed" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert inspector.main([str(empty)]) == 1
