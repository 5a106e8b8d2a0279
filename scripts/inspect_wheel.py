#!/usr/bin/env python3
"""Inspect built wheels (and sdists) for what their file names promise.

For each wheel: the file name's tags and the WHEEL/METADATA files agree, RECORD hashes match,
the package holds exactly one native module of the right kind for the platform tag, and the
binary itself is what the tag claims:

- manylinux / musllinux: an ELF shared object of the tag's architecture whose versioned glibc
  symbols stay within the tag's glibc floor (from ``.gnu.version_r``), linking only the
  libraries the policy allows (never libpython: abi3 modules resolve it from the interpreter);
- win: a PE32+ DLL of the tag's machine type importing only ``python3.dll`` (the stable ABI)
  and Windows system DLLs, no MinGW runtime (``libgcc_s``, ``libwinpthread``, ``libstdc++``)
  and no version-specific ``python3XY.dll``;
- macosx: a Mach-O (thin or universal) with the tag's architectures, a minimum macOS no newer
  than the tag's, linking only system libraries and frameworks (never a libpython).

Used by ``make test`` (the manylinux2014 x86_64 wheel), ``make wheels`` (every wheel in dist/)
and the release workflow (every wheel it builds). Exits non-zero when any check fails.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import re
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath
from struct import error as struct_error
from typing import Any

PACKAGE = "nomyo_native"
MODULE = "_core"
INIT_SYMBOL = f"PyInit_{MODULE}"

# The abi3 floor: the oldest CPython the wheel claims (pyproject's requires-python).
DEFAULT_PYTHON_FLOOR = (3, 11)

# manylinux2014 (PEP 599) libraries, plus the loader names the kernel maps for each arch.
MANYLINUX_ALLOWED_LIBS = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "libpthread.so.0",
        "librt.so.1",
        "libgcc_s.so.1",
        "libutil.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    }
)
MUSL_ALLOWED_LIB = re.compile(r"^(libc\.so|libc\.musl-[a-z0-9_]+\.so\.1|libgcc_s\.so\.1)$")

# Windows DLLs every supported Windows has. The UCRT forwarders (api-ms-win-crt-*) and
# vcruntime140.dll come with Windows 10+ and with every python.org CPython respectively.
WINDOWS_SYSTEM_DLLS = frozenset(
    {
        "kernel32.dll",
        "ntdll.dll",
        "advapi32.dll",
        "bcrypt.dll",
        "bcryptprimitives.dll",
        "crypt32.dll",
        "ws2_32.dll",
        "userenv.dll",
        "user32.dll",
        "shell32.dll",
        "ole32.dll",
        "oleaut32.dll",
        "secur32.dll",
        "msvcrt.dll",
        "ucrtbase.dll",
        "vcruntime140.dll",
        "vcruntime140_1.dll",
        "synchronization.dll",
        "wer.dll",
        "kernelbase.dll",
    }
)
WINDOWS_SYSTEM_DLL_PREFIXES = ("api-ms-win-",)
MINGW_RUNTIME = re.compile(r"^(libgcc_s_.*|libwinpthread-.*|libstdc\+\+-.*|libssp-.*)\.dll$")

MACOS_SYSTEM_LIB = re.compile(
    r"^(/usr/lib/lib[A-Za-z0-9_.+-]+\.dylib|/System/Library/Frameworks/[A-Za-z0-9]+\.framework/.+)$"
)

ARCH_OF_LINUX_TAG = {"x86_64": "x86_64", "aarch64": "aarch64", "i686": "x86", "armv7l": "arm"}
ELF_MACHINE = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64", "EM_386": "x86", "EM_ARM": "arm"}
PE_MACHINE = {0x8664: "x86_64", 0xAA64: "aarch64", 0x14C: "x86"}
ARCH_OF_WIN_TAG = {"win_amd64": "x86_64", "win_arm64": "aarch64", "win32": "x86"}
MACHO_CPU = {0x01000007: "x86_64", 0x0100000C: "aarch64"}
ARCHS_OF_MAC_TAG = {
    "x86_64": {"x86_64"},
    "arm64": {"aarch64"},
    "universal2": {"x86_64", "aarch64"},
}


@dataclass(frozen=True)
class BinaryFacts:
    """What the native module is, as read from its headers (parsing kept apart from policy)."""

    fmt: str  # "elf", "pe" or "macho"
    archs: frozenset[str]
    needed: tuple[str, ...]  # DT_NEEDED / imported DLLs / LC_LOAD_DYLIB
    glibc_versions: tuple[tuple[int, ...], ...] = ()  # versioned GLIBC_x.y references
    exports_init: bool = True
    min_macos: tuple[int, ...] | None = None


@dataclass
class Report:
    """The outcome of inspecting one artefact: a summary line and every failed check."""

    name: str
    facts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.errors.append(message)

    @property
    def ok(self) -> bool:
        return not self.errors


class InspectionError(Exception):
    """A file that cannot be parsed as what it claims to be."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


# ---- binary parsing -----------------------------------------------------------------------


def elf_facts(data: bytes) -> BinaryFacts:
    """Architecture, DT_NEEDED, GLIBC version references and the PyInit export of an ELF."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection
    from elftools.elf.sections import SymbolTableSection

    try:
        elf = ELFFile(io.BytesIO(data))
        arch = ELF_MACHINE.get(elf["e_machine"], str(elf["e_machine"]))
        needed: list[str] = []
        versions: set[tuple[int, ...]] = set()
        exports_init = False
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                needed += [t.needed for t in section.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
            elif isinstance(section, GNUVerNeedSection):
                for _verneed, auxes in section.iter_versions():
                    for aux in auxes:
                        match = re.fullmatch(r"GLIBC_([0-9.]+)", aux.name)
                        if match:
                            versions.add(_version(match.group(1)))
            elif isinstance(section, SymbolTableSection) and section.name == ".dynsym":
                exports_init = any(
                    s.name == INIT_SYMBOL and s["st_shndx"] != "SHN_UNDEF"
                    for s in section.iter_symbols()
                )
    except (ELFError, ValueError) as exc:
        raise InspectionError(f"not a readable ELF file: {exc}") from exc
    return BinaryFacts(
        fmt="elf",
        archs=frozenset({arch}),
        needed=tuple(needed),
        glibc_versions=tuple(sorted(versions)),
        exports_init=exports_init,
    )


def pe_facts(data: bytes) -> BinaryFacts:
    """Machine type, imported DLLs and the PyInit export of a PE file."""
    import pefile

    try:
        pe = pefile.PE(data=data, fast_load=True)
        pe.parse_data_directories(
            directories=[
                pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"],
                pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"],
                pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT"],
            ]
        )
    except pefile.PEFormatError as exc:
        raise InspectionError(f"not a readable PE file: {exc}") from exc
    if not pe.is_dll():
        raise InspectionError("the PE file is not a DLL")
    needed = [e.dll.decode() for e in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])]
    needed += [e.dll.decode() for e in getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", [])]
    exports = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
    names = {s.name.decode() for s in exports.symbols if s.name} if exports else set()
    machine = pe.FILE_HEADER.Machine
    return BinaryFacts(
        fmt="pe",
        archs=frozenset({PE_MACHINE.get(machine, hex(machine))}),
        needed=tuple(needed),
        exports_init=INIT_SYMBOL in names,
    )


def macho_facts(data: bytes) -> BinaryFacts:
    """Architectures, linked dylibs and minimum macOS of a (thin or fat) Mach-O file."""
    from macholib.MachO import MachO

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "module.so"
        path.write_bytes(data)
        try:
            return _macho_facts(MachO(str(path)))
        except (ValueError, OSError, KeyError, struct_error) as exc:
            raise InspectionError(f"not a readable Mach-O file: {exc}") from exc


def _macho_facts(macho: Any) -> BinaryFacts:
    from macholib import mach_o
    from macholib.SymbolTable import SymbolTable

    archs: set[str] = set()
    needed: set[str] = set()
    min_os: tuple[int, ...] | None = None
    exports_init = bool(macho.headers)
    for header in macho.headers:
        # Every architecture slice must export the init function (C names carry a '_').
        exported = {name for _, name in SymbolTable(macho, header).extdefsyms}
        exports_init = exports_init and f"_{INIT_SYMBOL}".encode() in exported
        cpu = header.header.cputype
        archs.add(MACHO_CPU.get(cpu, hex(cpu)))
        if header.header.filetype not in (mach_o.MH_BUNDLE, mach_o.MH_DYLIB):
            raise InspectionError(f"Mach-O file type {header.header.filetype} is no bundle/dylib")
        for load_cmd, cmd, payload in header.commands:
            kind = load_cmd.cmd
            if kind in (mach_o.LC_LOAD_DYLIB, mach_o.LC_LOAD_WEAK_DYLIB, mach_o.LC_REEXPORT_DYLIB):
                name = payload.split(b"\0", 1)[0].decode()
                needed.add(name)
            elif kind in (mach_o.LC_BUILD_VERSION, mach_o.LC_VERSION_MIN_MACOSX):
                raw = cmd.minos if kind == mach_o.LC_BUILD_VERSION else cmd.version
                version = (raw >> 16, (raw >> 8) & 0xFF)
                min_os = version if min_os is None else max(min_os, version)
    return BinaryFacts(
        fmt="macho",
        archs=frozenset(archs),
        needed=tuple(sorted(needed)),
        exports_init=exports_init,
        min_macos=min_os,
    )


def binary_facts(data: bytes) -> BinaryFacts:
    """Dispatch on the file's magic number."""
    if data[:4] == b"\x7fELF":
        return elf_facts(data)
    if data[:2] == b"MZ":
        return pe_facts(data)
    if data[:4] in (
        b"\xcf\xfa\xed\xfe",  # MH_MAGIC_64 (little endian)
        b"\xca\xfe\xba\xbe",  # FAT_MAGIC
        b"\xca\xfe\xba\xbf",  # FAT_MAGIC_64
    ):
        return macho_facts(data)
    raise InspectionError("unknown binary format (no ELF, PE or Mach-O magic)")


# ---- policy ---------------------------------------------------------------------------------


def check_binary(platform_tag: str, facts: BinaryFacts, report: Report) -> None:
    """Every rule the platform tag implies for the native module's facts."""
    linux = re.fullmatch(r"(manylinux|musllinux)_(\d+)_(\d+)_(\w+)", _normalise_linux(platform_tag))
    if linux:
        _check_linux(
            linux.group(1),
            (int(linux.group(2)), int(linux.group(3))),
            linux.group(4),
            facts,
            report,
        )
    elif platform_tag in ARCH_OF_WIN_TAG:
        _check_windows(ARCH_OF_WIN_TAG[platform_tag], facts, report)
    elif mac := re.fullmatch(r"macosx_(\d+)_(\d+)_(\w+)", platform_tag):
        _check_macos((int(mac.group(1)), int(mac.group(2))), mac.group(3), facts, report)
    else:
        report.fail(f"platform tag {platform_tag!r} is none this project builds")


def _normalise_linux(tag: str) -> str:
    """PEP 600 spelling of the legacy manylinux tags."""
    legacy = {"manylinux2014": "manylinux_2_17", "manylinux2010": "manylinux_2_12"}
    for old, new in legacy.items():
        if tag.startswith(old + "_"):
            return new + tag[len(old) :]
    return tag


def _check_linux(
    flavour: str, floor: tuple[int, int], arch_tag: str, facts: BinaryFacts, report: Report
) -> None:
    arch = ARCH_OF_LINUX_TAG.get(arch_tag, arch_tag)
    if facts.fmt != "elf":
        report.fail(f"{flavour} wheel holds a {facts.fmt} file, not ELF")
        return
    if facts.archs != {arch}:
        report.fail(f"architecture {sorted(facts.archs)} differs from the tag's {arch}")
    if not facts.exports_init:
        report.fail(f"{INIT_SYMBOL} is not exported")
    if any(lib.startswith("libpython") for lib in facts.needed):
        report.fail("links libpython (an extension module must not)")
    newest = max(facts.glibc_versions, default=None)
    if flavour == "manylinux":
        bad = [lib for lib in facts.needed if lib not in MANYLINUX_ALLOWED_LIBS]
        if bad:
            report.fail(f"links libraries outside the manylinux policy: {bad}")
        if not facts.glibc_versions:
            report.fail("no versioned glibc symbols: not linked against glibc")
        elif newest is not None and newest > floor:
            too_new = [v for v in facts.glibc_versions if v > floor]
            report.fail(
                f"needs glibc {'.'.join(map(str, newest))} (symbols "
                f"{', '.join('GLIBC_' + '.'.join(map(str, v)) for v in too_new)}) "
                f"above the tag's floor {floor[0]}.{floor[1]}"
            )
        report.facts.append(f"glibc floor {'.'.join(map(str, newest or ()))}")
    else:
        if facts.glibc_versions:
            report.fail("a musllinux module references glibc symbol versions")
        bad = [lib for lib in facts.needed if not MUSL_ALLOWED_LIB.match(lib)]
        if bad:
            report.fail(f"links libraries other than musl libc: {bad}")
        if not any(lib.startswith("libc") for lib in facts.needed):
            report.fail("does not link musl libc")
    report.facts.append(f"ELF {arch}, needs {', '.join(facts.needed) or 'nothing'}")


def _check_windows(arch: str, facts: BinaryFacts, report: Report) -> None:
    if facts.fmt != "pe":
        report.fail(f"Windows wheel holds a {facts.fmt} file, not PE")
        return
    if facts.archs != {arch}:
        report.fail(f"machine {sorted(facts.archs)} differs from the tag's {arch}")
    if not facts.exports_init:
        report.fail(f"{INIT_SYMBOL} is not exported")
    lowered = [dll.lower() for dll in facts.needed]
    if "python3.dll" not in lowered:
        report.fail("does not import python3.dll (the stable ABI)")
    for dll in lowered:
        if dll == "python3.dll":
            continue
        if re.fullmatch(r"python3\d+\.dll", dll):
            report.fail(f"imports {dll}: version-specific, breaks abi3")
        elif MINGW_RUNTIME.match(dll):
            report.fail(f"imports the MinGW runtime {dll} (not on users' machines)")
        elif dll not in WINDOWS_SYSTEM_DLLS and not dll.startswith(WINDOWS_SYSTEM_DLL_PREFIXES):
            report.fail(f"imports {dll}, which is neither python3.dll nor a system DLL")
    report.facts.append(f"PE {arch}, imports {', '.join(sorted(set(lowered)))}")


def _check_macos(
    tag_version: tuple[int, int], arch_tag: str, facts: BinaryFacts, report: Report
) -> None:
    if facts.fmt != "macho":
        report.fail(f"macOS wheel holds a {facts.fmt} file, not Mach-O")
        return
    archs = ARCHS_OF_MAC_TAG.get(arch_tag)
    if archs is None:
        report.fail(f"unknown macOS architecture tag {arch_tag!r}")
    elif facts.archs != archs:
        report.fail(f"architectures {sorted(facts.archs)} differ from the tag's {sorted(archs)}")
    if not facts.exports_init:
        report.fail(f"{INIT_SYMBOL} is not exported")
    if facts.min_macos is None:
        report.fail("no minimum macOS version recorded")
    elif facts.min_macos > tag_version:
        report.fail(
            f"built for macOS {'.'.join(map(str, facts.min_macos))}, newer than the tag's "
            f"{tag_version[0]}.{tag_version[1]}"
        )
    for lib in facts.needed:
        if "python" in lib.lower():
            report.fail(f"links {lib} (an extension module must not link libpython)")
        elif not MACOS_SYSTEM_LIB.match(lib):
            report.fail(f"links {lib}, which is no system library")
    minos = ".".join(map(str, facts.min_macos or ()))
    report.facts.append(
        f"Mach-O {'+'.join(sorted(facts.archs))}, macOS >= {minos}, links {', '.join(facts.needed)}"
    )


# ---- wheel and sdist structure ------------------------------------------------------------


def _check_record(zf: zipfile.ZipFile, record_name: str, report: Report) -> None:
    """Every file is listed in RECORD with a matching sha256 and size."""
    listed: set[str] = set()
    for line in zf.read(record_name).decode().splitlines():
        if not line.strip():
            continue
        path, digest, size = line.rsplit(",", 2)
        listed.add(path)
        if path == record_name:
            continue
        data = zf.read(path)
        algorithm, _, expected = digest.partition("=")
        if algorithm != "sha256":
            report.fail(f"RECORD uses {algorithm!r} for {path}")
            continue
        actual = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if actual != expected or int(size) != len(data):
            report.fail(f"RECORD hash or size mismatch for {path}")
    unlisted = [n for n in zf.namelist() if n not in listed and not n.endswith("/")]
    if unlisted:
        report.fail(f"files missing from RECORD: {unlisted}")


def inspect_wheel(path: Path, python_floor: tuple[int, int] = DEFAULT_PYTHON_FLOOR) -> Report:
    """All checks for one wheel."""
    report = Report(path.name)
    parts = path.name[: -len(".whl")].split("-")
    if len(parts) != 5:
        report.fail("file name is not name-version-python-abi-platform.whl")
        return report
    _name, version, python_tag, abi_tag, platform_tags = parts
    floor_tag = f"cp{python_floor[0]}{python_floor[1]}"
    if python_tag != floor_tag or abi_tag != "abi3":
        report.fail(f"tags {python_tag}-{abi_tag}, expected {floor_tag}-abi3")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        dist_info = {PurePosixPath(n).parts[0] for n in names if ".dist-info/" in n}
        if len(dist_info) != 1:
            report.fail(f"expected one .dist-info folder, found {sorted(dist_info)}")
            return report
        (info,) = dist_info
        wheel_meta = HeaderParser().parsestr(zf.read(f"{info}/WHEEL").decode())
        tags = set(wheel_meta.get_all("Tag") or [])
        expected = {f"{python_tag}-{abi_tag}-{p}" for p in platform_tags.split(".")}
        if tags != expected:
            report.fail(f"WHEEL tags {sorted(tags)} differ from the file name's {sorted(expected)}")
        if wheel_meta.get("Root-Is-Purelib", "").lower() != "false":
            report.fail("Root-Is-Purelib is not false for a platform wheel")
        metadata = HeaderParser().parsestr(zf.read(f"{info}/METADATA").decode())
        requires = metadata.get("Requires-Python", "")
        if requires.replace(" ", "") != f">={python_floor[0]}.{python_floor[1]}":
            report.fail(f"Requires-Python {requires!r} differs from the abi3 floor")
        if metadata.get("Version") != version:
            report.fail(f"METADATA version {metadata.get('Version')} != file name's {version}")
        _check_record(zf, f"{info}/RECORD", report)
        modules = [
            n
            for n in names
            if n.startswith(f"{PACKAGE}/{MODULE}.") and not n.endswith((".pyi", ".py"))
        ]
        if len(modules) != 1:
            report.fail(f"expected one native module {PACKAGE}/{MODULE}.*, found {modules}")
            return report
        (module,) = modules
        if f"{PACKAGE}/{MODULE}.pyi" not in names:
            report.fail("the type stub _core.pyi is missing")
        windows = platform_tags.startswith("win")
        suffix = ".pyd" if windows else ".abi3.so"
        if not module.endswith(suffix):
            report.fail(f"native module {module} should end in {suffix}")
        data = zf.read(module)
    try:
        facts = binary_facts(data)
    except InspectionError as exc:
        report.fail(f"{module}: {exc}")
        return report
    for platform_tag in platform_tags.split("."):
        check_binary(platform_tag, facts, report)
    # A compressed tag set (manylinux2014_x86_64.manylinux_2_17_x86_64) states the same facts twice.
    report.facts = [f"{python_tag}-{abi_tag}-{platform_tags}", *dict.fromkeys(report.facts)]
    return report


SDIST_REQUIRED = ("pyproject.toml", "Cargo.toml", "Cargo.lock", "rust/src/lib.rs", "PKG-INFO")


def inspect_sdist(path: Path, python_floor: tuple[int, int] = DEFAULT_PYTHON_FLOOR) -> Report:
    """The sdist holds what building from source needs and states the Python floor."""
    report = Report(path.name)
    with tarfile.open(path) as tf:
        members = tf.getnames()
        roots = {m.split("/", 1)[0] for m in members}
        if len(roots) != 1:
            report.fail(f"expected one top folder, found {sorted(roots)}")
            return report
        (root,) = roots
        for required in (*SDIST_REQUIRED, f"python/{PACKAGE}/__init__.py"):
            if f"{root}/{required}" not in members:
                report.fail(f"missing {required}")
        try:
            pkg_info = tf.extractfile(f"{root}/PKG-INFO")
        except KeyError:
            return report
        if pkg_info is not None:
            headers = HeaderParser().parsestr(pkg_info.read().decode())
            requires = (headers.get("Requires-Python") or "").replace(" ", "")
            if requires != f">={python_floor[0]}.{python_floor[1]}":
                report.fail(f"Requires-Python {requires!r} differs from the abi3 floor")
    report.facts.append(f"sdist with {len(members)} entries")
    return report


def inspect(path: Path, python_floor: tuple[int, int] = DEFAULT_PYTHON_FLOOR) -> Report:
    if path.name.endswith(".whl"):
        return inspect_wheel(path, python_floor)
    if path.name.endswith(".tar.gz"):
        return inspect_sdist(path, python_floor)
    report = Report(path.name)
    report.fail("neither a wheel nor an sdist")
    return report


def _artefacts(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.name.endswith((".whl", ".tar.gz")))
        else:
            found.append(path)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="wheels, sdists or folders of them")
    parser.add_argument(
        "--python-floor",
        default=".".join(map(str, DEFAULT_PYTHON_FLOOR)),
        help="oldest CPython the abi3 wheels claim (default %(default)s)",
    )
    parser.add_argument(
        "--expect", type=int, default=0, help="fail unless at least this many artefacts"
    )
    args = parser.parse_args(argv)
    floor = _version(args.python_floor)
    artefacts = _artefacts(args.paths)
    passed = failed = 0
    for artefact in artefacts:
        report = inspect(artefact, (floor[0], floor[1]))
        status = "PASSED" if report.ok else "FAILED"
        print(f"{status} {report.name}")
        for fact in report.facts:
            print(f"    {fact}")
        for error in report.errors:
            print(f"    error: {error}")
        passed += report.ok
        failed += not report.ok
    if len(artefacts) < args.expect:
        print(f"error: expected at least {args.expect} artefacts, found {len(artefacts)}")
        failed += 1
    print(f"wheel inspection: {passed} passed, {failed} failed")
    return 1 if failed or not artefacts else 0


if __name__ == "__main__":
    sys.exit(main())
