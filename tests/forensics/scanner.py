"""Read another process's whole readable memory and count secret byte strings in it.

This is the measuring instrument of the memory-forensics suites: an attacker with a core dump,
a swap image or ptrace access sees exactly what ``/proc/PID/mem`` shows, so every readable
mapping is scanned, including mappings excluded from core dumps (MADV_DONTDUMP) and locked
ones: the claim under test is that secrets are *gone*, not merely hidden.

Linux only. Reading ``/proc/PID/mem`` needs ptrace rights over the target: root, or the parent
of the target under Yama ``ptrace_scope`` 1.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence

# Mappings that cannot be read through /proc/PID/mem (or hold only kernel-provided data).
_SKIPPED_MAPPINGS = ("[vvar]", "[vvar_vclock]", "[vsyscall]")
# Read large mappings in chunks so a 100 MiB heap does not need a second 100 MiB copy at once;
# consecutive chunks overlap by the longest needle so no match is split unseen.
_CHUNK = 8 * 1024 * 1024

_MAPS_LINE = re.compile(
    r"^(?P<start>[0-9a-f]+)-(?P<end>[0-9a-f]+)\s+(?P<perms>\S+)\s+\S+\s+\S+\s+\S+\s*(?P<name>.*)$"
)


@dataclasses.dataclass(frozen=True)
class Region:
    start: int
    end: int
    perms: str
    name: str

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclasses.dataclass
class ScanResult:
    """Occurrences per category, and where they were (mapping name -> count) for diagnosis."""

    counts: dict[str, int]
    locations: dict[str, dict[str, int]]
    bytes_scanned: int
    regions_scanned: int
    regions_unreadable: int

    def where(self, category: str) -> str:
        found = self.locations.get(category, {})
        return ", ".join(f"{name or '[anon]'} x{n}" for name, n in sorted(found.items())) or "-"


def readable_regions(pid: int) -> list[Region]:
    """The readable mappings of ``pid`` from ``/proc/PID/maps``."""
    regions = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            m = _MAPS_LINE.match(line.rstrip("\n"))
            if m is None or not m["perms"].startswith("r"):
                continue
            name = m["name"].strip()
            if name in _SKIPPED_MAPPINGS:
                continue
            regions.append(Region(int(m["start"], 16), int(m["end"], 16), m["perms"], name))
    return regions


def iter_memory(pid: int, overlap: int = 0) -> Iterator[tuple[Region, int, bytes | None]]:
    """Yield ``(region, address, chunk)`` over every readable mapping; ``chunk`` is None when
    the kernel refuses a read (e.g. a device mapping), so that the caller can count it."""
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for region in readable_regions(pid):
            offset = region.start
            while offset < region.end:
                length = min(_CHUNK + overlap, region.end - offset)
                try:
                    mem.seek(offset)
                    chunk = mem.read(length)
                except (OSError, ValueError, OverflowError):
                    yield region, offset, None
                    break
                yield region, offset, chunk
                if offset + length >= region.end:
                    break
                offset += _CHUNK


def count_in_process(pid: int, needles: Mapping[str, Sequence[bytes]]) -> ScanResult:
    """Count every occurrence of every needle, grouped by category.

    A needle found at the same address twice (in the overlap of two chunks) counts once.
    """
    all_needles = [n for group in needles.values() for n in group]
    if any(not n for n in all_needles):
        raise ValueError("empty needle")
    overlap = max((len(n) for n in all_needles), default=1) - 1
    counts = {category: 0 for category in needles}
    locations: dict[str, dict[str, int]] = {category: {} for category in needles}
    seen: set[tuple[int, bytes]] = set()
    scanned = regions = unreadable = 0
    last_region: Region | None = None
    for region, address, chunk in iter_memory(pid, overlap):
        if region is not last_region:
            regions += 1
            last_region = region
        if chunk is None:
            unreadable += 1
            continue
        scanned += len(chunk)
        for category, group in needles.items():
            for needle in group:
                start = chunk.find(needle)
                while start != -1:
                    key = (address + start, needle)
                    if key not in seen:
                        seen.add(key)
                        counts[category] += 1
                        where = locations[category]
                        where[region.name] = where.get(region.name, 0) + 1
                    start = chunk.find(needle, start + 1)
    return ScanResult(counts, locations, scanned, regions, unreadable)


class Paused:
    """SIGSTOP a process for the duration of a scan so that nothing moves under the reader."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> Paused:
        os.kill(self.pid, signal.SIGSTOP)
        _wait_state(self.pid, "T")
        return self

    def __exit__(self, *_exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


def _wait_state(pid: int, state: str, attempts: int = 2000) -> None:
    for _ in range(attempts):
        with open(f"/proc/{pid}/stat") as stat:
            # The state field follows the parenthesised command name, which may contain spaces.
            if stat.read().rsplit(")", 1)[1].split()[0] == state:
                return
        os.sched_yield()
    raise TimeoutError(f"process {pid} did not reach state {state!r}")


def json_string_framings(key: str, value_prefix: str) -> list[bytes]:
    """``"key":"value_prefix`` and ``"key": "value_prefix``: the two separator styles of
    serialized JSON (compact, and Python's ``json.dumps`` default). The caller's own Python
    strings never carry this framing, so a match is a copy of serialized JSON."""
    return [
        f'"{key}":"{value_prefix}'.encode(),
        f'"{key}": "{value_prefix}'.encode(),
    ]


def supported() -> bool:
    """Linux with /proc, and ptrace rights over our own children (Yama ``ptrace_scope`` 2
    and 3 deny them to non-root users)."""
    if not (sys.platform.startswith("linux") and os.path.exists("/proc/self/mem")):
        return False
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as scope:
            level = int(scope.read().strip())
    except (OSError, ValueError):
        return True  # no Yama: classic ptrace rules, a parent may read its child
    return level <= 1 or (level == 2 and os.geteuid() == 0)
