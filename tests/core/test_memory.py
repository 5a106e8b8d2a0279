"""Locked memory, observed from outside the core: the kernel's own accounting (VmLck, smaps
VmFlags), the process's memory read back through /proc/self/mem, and crashes of subprocesses."""

from __future__ import annotations

import array
import ctypes
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from nomyo_native import _core

from ._limits import limited
from ._limits import run as limited_run
from ._probes import probes_module

_testing = probes_module()

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads Linux /proc accounting"
)

PAGE = os.sysconf("SC_PAGE_SIZE")


# ---- helpers -----------------------------------------------------------------------------------


def vmlck_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmLck:"):
                return int(line.split()[1])
    raise AssertionError("no VmLck line in /proc/self/status")


def vm_flags(address: int) -> set[str]:
    """VmFlags of the mapping that contains `address`."""
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                start, end = (int(x, 16) for x in head.split("-"))
                inside = start <= address < end
            elif inside and line.startswith("VmFlags:"):
                return set(line.split()[1:])
    raise AssertionError(f"no mapping contains {address:#x}")


def buffer_address(buf: bytearray) -> int:
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))


def run_python(code: str, *, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter with core dumps disabled (crashes are expected)."""

    def no_core() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return subprocess.run(
        [*(prefix or []), sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=no_core,
        check=False,
    )


def cap_ipc_lock() -> bool:
    """Whether this process has CAP_IPC_LOCK, with which mlock goes past RLIMIT_MEMLOCK."""
    with open("/proc/self/status") as f:
        cap_eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    return bool(cap_eff & (1 << 14))


def pool_bound(lock_limit: int | None) -> int:
    """The pool's bound: 12 MiB, or half of RLIMIT_MEMLOCK when that is lower and binds."""
    if lock_limit is None or cap_ipc_lock():
        return 12 << 20
    return min(12 << 20, lock_limit // 2)


def ran_without_lock_privilege(request: pytest.FixtureRequest) -> bool:
    """Under CAP_IPC_LOCK, with which RLIMIT_MEMLOCK does not bind, run the calling test again
    in a child pytest without it, assert that it passed there, and say so (the caller then
    returns); without it, say no (the caller goes on here)."""
    if not cap_ipc_lock():
        return False
    if os.environ.get("NOMYO_TEST_WITHOUT_IPC_LOCK"):
        pytest.fail("CAP_IPC_LOCK is still effective in the child meant to run without it")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running with CAP_IPC_LOCK and without setpriv: cannot drop it")
    without = [setpriv, "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock"]
    result = subprocess.run(
        [
            *without,
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            request.node.nodeid,
        ],
        cwd=request.config.rootpath,
        env={**os.environ, "NOMYO_TEST_WITHOUT_IPC_LOCK": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout, result.stdout[-3000:]
    return True


def require_lock_budget(size: int) -> None:
    """Skip when this process may not lock `size` more bytes (RLIMIT_MEMLOCK minus what is
    locked already, unless CAP_IPC_LOCK lifts the limit): the core would rightly degrade."""
    if cap_ipc_lock():
        return
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft == resource.RLIM_INFINITY:
        return
    if soft - vmlck_kib() * 1024 < size + 16 * PAGE:
        pytest.skip(f"RLIMIT_MEMLOCK ({soft} bytes) leaves no room to lock {size} bytes")


def without_lock_privilege() -> list[str]:
    """Command prefix that makes RLIMIT_MEMLOCK binding: root's CAP_IPC_LOCK ignores it."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop CAP_IPC_LOCK")
    return [setpriv, "--bounding-set=-ipc_lock"]


# ---- status ------------------------------------------------------------------------------------


def test_memory_status_reports_the_process_state() -> None:
    status = _core.memory_status()
    assert set(status) == {
        "method",
        "platform",
        "bytes_locked",
        "bytes_unlocked",
        "aws_lc_heap",
        "buffers_live",
        "bytes_pooled",
        "pool_limit_bytes",
        "lock_failures",
        "dump_exclusion",
        "guard_pages",
        "lock_limit_bytes",
    }
    assert status["method"] in ("mlock", "zero-only")
    assert status["platform"] == "linux"
    assert status["dump_exclusion"] is True
    assert status["guard_pages"] is True
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    expected = None if soft == resource.RLIM_INFINITY else soft
    assert status["lock_limit_bytes"] == expected
    for key in ("bytes_locked", "buffers_live", "bytes_pooled", "lock_failures"):
        assert isinstance(status[key], int) and status[key] >= 0
    # The pool keeps at most 12 MiB, and at most half of RLIMIT_MEMLOCK where it binds.
    pool_limit = pool_bound(expected)
    assert status["pool_limit_bytes"] == pool_limit
    assert status["bytes_pooled"] <= min(status["bytes_locked"], pool_limit)


def test_the_pool_bound_follows_the_lock_limit_as_it_changes(
    request: pytest.FixtureRequest,
) -> None:
    # The pool reads RLIMIT_MEMLOCK once, not at every buffer's drop; memory_status reads it
    # afresh, so that what it reports, and the pool's bound from then on, are current.
    if ran_without_lock_privilege(request):
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    lowered = 2 << 20
    if hard != resource.RLIM_INFINITY and hard < lowered:
        pytest.skip("the hard RLIMIT_MEMLOCK is below the lowered limit this test sets")
    _core.memory_status()  # the limit as it is, remembered
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (lowered, hard))
        status = _core.memory_status()
        assert status["lock_limit_bytes"] == lowered
        assert status["pool_limit_bytes"] == lowered // 2
        _testing.release_pool()
        for seed, size in enumerate((300_000, 500_000, 700_000)):
            _testing.LockedProbe(size, 60 + seed).release()
        assert _core.memory_status()["bytes_pooled"] <= lowered // 2
    finally:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (soft, hard))
    status = _core.memory_status()
    expected = None if soft == resource.RLIM_INFINITY else soft
    assert status["lock_limit_bytes"] == expected
    assert status["pool_limit_bytes"] == pool_bound(expected)


def test_the_pool_keeps_half_of_a_binding_lock_limit_and_all_of_one_that_does_not() -> None:
    # The same process state but for CAP_IPC_LOCK: without it (a child with it dropped) the
    # pool keeps half of an 8 MiB limit, so that buffers in use keep the other half; with it
    # (root here) the limit does not bind mlock, and the pool keeps its own 12 MiB, so that
    # megabyte-sized buffers are reused rather than locked afresh (a page fault per 4 KiB).
    code = """
        import json
        from nomyo_native import _core
        from nomyo_native._core import _testing as probes
        SIZES = (3_000_000, 2_500_000, 2_000_000)
        probes.release_pool()
        # All alive at once, so that none reuses another's mapping.
        alive = [probes.LockedProbe(size, 70 + seed) for seed, size in enumerate(SIZES)]
        for probe in alive:
            probe.release()
        status = _core.memory_status()
        print(json.dumps({
            "cap": cap_ipc_lock(),
            "pool_limit": status["pool_limit_bytes"],
            "pooled": status["bytes_pooled"],
        }))
    """
    eight_mib = 8 << 20
    bound = limited_run(code, limited(eight_mib))
    assert bound["cap"] is False
    assert bound["pool_limit"] == eight_mib // 2
    assert 0 < bound["pooled"] <= eight_mib // 2
    if os.geteuid() != 0 or not cap_ipc_lock():
        pytest.skip("CAP_IPC_LOCK is not ours: the unbound case cannot be run here")
    unbound = limited_run(code, [shutil.which("prlimit") or "prlimit", f"--memlock={eight_mib}"])
    assert unbound["cap"] is True
    assert unbound["pool_limit"] == 12 << 20
    # All three are kept: 7.5 MB, more than half of the limit the capability lifts.
    assert unbound["pooled"] > eight_mib // 2


def test_a_lowered_lock_limit_shrinks_a_fuller_pool_to_its_new_bound(
    request: pytest.FixtureRequest,
) -> None:
    # The pool filled under the limit as it was; once memory_status sees a lower one, the pool
    # keeps no more than the new bound (what it reports is what it holds), and the mappings
    # it let go are unlocked and unmapped, not left counted.
    if ran_without_lock_privilege(request):
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    lowered = 2 << 20
    if hard != resource.RLIM_INFINITY and hard < lowered:
        pytest.skip("the hard RLIMIT_MEMLOCK is below the lowered limit this test sets")
    _core.memory_status()
    _testing.release_pool()
    for seed, size in enumerate((300_000, 500_000, 700_000, 900_000)):
        _testing.LockedProbe(size, 70 + seed).release()
    before = _core.memory_status()
    if before["bytes_pooled"] <= lowered // 2:
        pytest.skip("the lock limit leaves the pool no room for the probes")
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (lowered, hard))
        status = _core.memory_status()
        assert status["pool_limit_bytes"] == lowered // 2
        assert 0 < status["bytes_pooled"] <= lowered // 2
        released = before["bytes_pooled"] - status["bytes_pooled"]
        assert status["bytes_locked"] == before["bytes_locked"] - released
    finally:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (soft, hard))
        _testing.release_pool()


def test_constants() -> None:
    assert _core.MAX_JSON_DEPTH == 128
    assert _core.MAX_PLAINTEXT_BYTES == 10 * 1024 * 1024
    assert _core.MAX_ENVELOPE_BYTES > _core.MAX_PLAINTEXT_BYTES * 4 // 3
    assert _core.MIN_RSA_BITS == 2048


# ---- LockedBuf probes ----------------------------------------------------------------------------


def test_probe_is_locked_dump_excluded_and_counted() -> None:
    size = 256 * 1024
    _testing.release_pool()  # so that the probe gets fresh pages, locked by this test
    require_lock_budget(size)
    before_kib = vmlck_kib()
    before = _core.memory_status()
    probe = _testing.LockedProbe(size, 11)
    try:
        assert probe.size == size
        assert probe.locked
        assert vmlck_kib() - before_kib >= size // 1024
        flags = vm_flags(probe.address)
        assert "lo" in flags, flags  # VM_LOCKED
        assert "dd" in flags, flags  # VM_DONTDUMP
        during = _core.memory_status()
        assert during["bytes_locked"] - before["bytes_locked"] >= size
        assert during["buffers_live"] == before["buffers_live"] + 1
        assert during["method"] == "mlock"
        # The digest the core computes is the digest of the bytes at `address`.
        with open("/proc/self/mem", "rb", buffering=0) as mem:
            mem.seek(probe.address)
            assert hashlib.sha256(mem.read(size)).hexdigest() == probe.pattern_digest()
    finally:
        probe.release()
    after = _core.memory_status()
    assert after["buffers_live"] == before["buffers_live"]
    # Its pages went to the pool (still locked) or were freed: nothing else stays locked.
    pooled = after["bytes_pooled"] - before["bytes_pooled"]
    assert after["bytes_locked"] - before["bytes_locked"] == pooled
    released = _testing.release_pool()
    assert released == after["bytes_pooled"]
    final = _core.memory_status()
    assert final["bytes_pooled"] == 0
    assert final["bytes_locked"] == before["bytes_locked"] - before["bytes_pooled"]
    assert vmlck_kib() <= before_kib + 4  # page-granular noise only


# ---- the reuse pool ------------------------------------------------------------------------------


def read_memory(address: int, size: int) -> bytes | None:
    """`size` bytes at `address` of this process; None when unmapped."""
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        return os.pread(fd, size, address)
    except OSError:
        return None
    finally:
        os.close(fd)


def test_released_buffer_waits_in_the_pool_wiped_locked_and_dump_excluded() -> None:
    size = 300_000
    # When nothing was locked yet, the first status probes with a buffer of its own, which the
    # pool then keeps: run first (as when no other test ran before), it is not this test's.
    _core.memory_status()
    _testing.release_pool()
    require_lock_budget(2 * size)
    before = _core.memory_status()
    probe = _testing.LockedProbe(size, 21)
    address, digest = probe.address, probe.pattern_digest()
    probe.release()
    pooled = _core.memory_status()
    assert pooled["buffers_live"] == before["buffers_live"]
    assert pooled["bytes_pooled"] - before["bytes_pooled"] >= size
    assert pooled["bytes_locked"] - before["bytes_locked"] == pooled["bytes_pooled"]
    # Still mapped, still locked and out of dumps, and every byte zero.
    content = read_memory(address, size)
    assert content is not None, "a pooled buffer must stay mapped"
    assert content.count(0) == size, "a pooled buffer still holds non-zero bytes"
    flags = vm_flags(address)
    assert "lo" in flags and "dd" in flags, flags

    # The next buffer of that size reuses the mapping: same address, pool and counters back.
    again = _testing.LockedProbe(size, 22)
    try:
        assert again.address == address
        assert again.locked
        reused = _core.memory_status()
        assert reused["bytes_pooled"] == before["bytes_pooled"]
        assert reused["bytes_locked"] == pooled["bytes_locked"]
        assert reused["buffers_live"] == before["buffers_live"] + 1
        content = read_memory(address, size)
        assert content is not None
        assert hashlib.sha256(content).hexdigest() == again.pattern_digest() != digest
    finally:
        again.release()


def test_reused_buffer_starts_zeroed() -> None:
    # A JSON document serialized into a pooled buffer that held a pattern before: any stale
    # byte would show up in the digest of the exact output.
    size = 200_000
    _testing.release_pool()
    _testing.LockedProbe(size, 31).release()
    assert _core.memory_status()["bytes_pooled"] >= size
    text = "z" * (size - 2)
    digest, length = _testing.json_digest(text)
    assert length == size
    assert digest == hashlib.sha256(json.dumps(text).encode()).hexdigest()
    probe = _testing.LockedProbe(size, 0)
    try:
        # seed 0 still fills a pattern: the probe overwrote every byte it was given.
        assert probe.pattern_digest() != hashlib.sha256(bytes(size)).hexdigest()
    finally:
        probe.release()


def test_pool_keeps_two_per_size_class_and_stays_under_its_limit() -> None:
    _testing.release_pool()
    limit = _core.memory_status()["pool_limit_bytes"]
    # Three of one class: only two are kept.
    size = 100_000
    require_lock_budget(3 * size)
    before = _core.memory_status()
    same = [_testing.LockedProbe(size, i) for i in range(3)]
    for p in same:
        p.release()
    span = (size + 16 + PAGE - 1) // PAGE * PAGE
    kept = _core.memory_status()
    assert kept["bytes_pooled"] - before["bytes_pooled"] == 2 * span
    # Buffers of distinct classes adding up to more than the limit: the pool stops at it.
    sizes = [limit * 6 // 10, limit * 3 // 10, limit * 15 // 100]
    require_lock_budget(sum(sizes) + 2 * span)
    big = [_testing.LockedProbe(n, 7) for n in sizes]
    assert all(p.locked for p in big)
    for p in big:
        p.release()
    status = _core.memory_status()
    assert status["bytes_pooled"] <= limit
    assert status["bytes_pooled"] < 2 * span + sum(sizes)  # something was refused
    assert status["bytes_locked"] - status["bytes_pooled"] == (
        before["bytes_locked"] - before["bytes_pooled"]
    )
    assert _testing.release_pool() == status["bytes_pooled"]
    assert _core.memory_status()["bytes_pooled"] == 0


def test_a_bigger_buffer_displaces_smaller_ones_from_a_full_pool_and_serves_them() -> None:
    # A request seals from one big staging buffer and opens into a somewhat smaller one: the
    # pool keeps the bigger mapping (freeing the smaller) and hands it out for both.
    _testing.release_pool()
    limit = _core.memory_status()["pool_limit_bytes"]
    small_size, big_size = limit * 45 // 100, limit * 70 // 100
    require_lock_budget(small_size + big_size)
    before = _core.memory_status()
    small = _testing.LockedProbe(small_size, 51)
    big = _testing.LockedProbe(big_size, 52)
    big_address = big.address
    small.release()
    big.release()  # together over the limit: the small one makes way
    status = _core.memory_status()
    big_span = (big_size + 16 + PAGE - 1) // PAGE * PAGE
    assert status["bytes_pooled"] == big_span <= limit
    assert status["bytes_locked"] - status["bytes_pooled"] == (
        before["bytes_locked"] - before["bytes_pooled"]
    )
    # A request of the small size gets the big mapping (its data flush against the end).
    again = _testing.LockedProbe(small_size, 53)
    try:
        assert again.locked
        assert again.address == big_address + big_size - small_size
        assert _core.memory_status()["bytes_pooled"] == 0
    finally:
        again.release()
    # Not the other way round: a smaller buffer (too small to be given the big mapping) does
    # not displace a bigger one.
    assert _core.memory_status()["bytes_pooled"] == big_span
    _testing.LockedProbe(limit * 34 // 100, 54).release()
    assert _core.memory_status()["bytes_pooled"] == big_span
    assert _testing.release_pool() == big_span


def test_release_pool_unmaps_the_pooled_buffers() -> None:
    size = 150_000
    _testing.release_pool()
    before_kib = vmlck_kib()
    probe = _testing.LockedProbe(size, 41)
    address = probe.address
    probe.release()
    assert _core.memory_status()["bytes_pooled"] >= size
    # Allocated before the pool is freed, so that nothing lands in the freed pages.
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    sink = bytearray(size)
    try:
        assert _testing.release_pool() >= size
        try:
            n = os.preadv(fd, [sink], address)
        except OSError:
            n = None  # unmapped
    finally:
        os.close(fd)
    assert n is None or sink.count(0) == size
    assert _core.memory_status()["bytes_pooled"] == 0
    assert vmlck_kib() <= before_kib + 4


@pytest.mark.parametrize("canary_byte", [0, 15])
@pytest.mark.parametrize("size", [100, 300_000])
def test_overwritten_canary_aborts_on_the_way_into_the_pool(size: int, canary_byte: int) -> None:
    # The canary fills the 16 bytes at the start of the mapping's pages; the data ends at the
    # trailing guard page. The byte is inverted, not set to a constant: the canary is random,
    # and a constant equal to its byte (one run in 256) changed nothing.
    span = (size + 16 + PAGE - 1) // PAGE * PAGE
    code = f"""
        import ctypes
        from nomyo_native import _core
        from nomyo_native._core import _testing

        probe = _testing.LockedProbe({size}, 1)
        byte = ctypes.c_ubyte.from_address(probe.address + {size} - {span} + {canary_byte})
        byte.value ^= 0xFF
        probe.release()
        print("released")
    """
    result = run_python(code)
    assert result.returncode == -signal.SIGABRT, (result.returncode, result.stderr[-2000:])
    assert "released" not in result.stdout


def test_fork_child_drops_the_inherited_pool() -> None:
    code = """
        import json, os
        from nomyo_native import _core
        from nomyo_native._core import _testing

        def vmlck_kib():
            for line in open("/proc/self/status"):
                if line.startswith("VmLck:"):
                    return int(line.split()[1])

        _testing.LockedProbe(300_000, 1).release()
        parent = _core.memory_status()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            inherited = _core.memory_status()
            probe = _testing.LockedProbe(300_000, 2)
            during = (_core.memory_status(), probe.locked, vmlck_kib())
            probe.release()
            after = _core.memory_status()
            os.write(write_end, json.dumps([inherited, during, after]).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as r:
            child = json.loads(r.read())
        _pid, status = os.waitpid(pid, 0)
        print(json.dumps(dict(parent=parent, child=child, status=status,
                              parent_after=_core.memory_status())))
    """
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    r = json.loads(result.stdout)
    assert r["status"] == 0
    parent, (inherited, (during, child_locked, child_kib), after) = r["parent"], r["child"]
    assert parent["bytes_pooled"] >= 300_000
    # The child's copies of the pooled pages are not locked (mlock is not inherited): dropped.
    assert inherited["bytes_pooled"] == 0
    assert inherited["bytes_locked"] == parent["bytes_locked"] - parent["bytes_pooled"]
    assert child_locked is True
    assert child_kib >= 300_000 // 1024
    assert during["buffers_live"] == inherited["buffers_live"] + 1
    assert after["bytes_pooled"] >= 300_000  # the child has its own pool now
    # The parent's pool is untouched.
    assert r["parent_after"]["bytes_pooled"] == parent["bytes_pooled"]


def test_pattern_depends_on_seed_and_is_not_zero() -> None:
    a, b, c = (_testing.LockedProbe(4096, s) for s in (1, 2, 1))
    zero = hashlib.sha256(bytes(4096)).hexdigest()
    assert a.pattern_digest() == c.pattern_digest()
    assert a.pattern_digest() != b.pattern_digest()
    assert a.pattern_digest() != zero
    for p in (a, b, c):
        p.release()


@pytest.mark.parametrize("size", [100, 5000, 256 * 1024])
def test_released_probe_bytes_are_gone(size: int) -> None:
    probe = _testing.LockedProbe(size, 99)
    digest = probe.pattern_digest()
    address = probe.address
    # Everything the read needs is allocated before the release, so nothing reuses the pages.
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    sink = bytearray(size)
    try:
        probe.release()
        try:
            n = os.preadv(fd, [sink], address)
        except OSError:
            return  # unmapped: nothing left to read
        assert n == size
        assert sink.count(0) == size, "released LockedBuf still holds non-zero bytes"
        assert hashlib.sha256(sink).hexdigest() != digest
    finally:
        os.close(fd)
    with pytest.raises(ValueError, match="released"):
        probe.pattern_digest()
    assert not probe.locked
    probe.release()  # twice is harmless


def test_zero_size_probe() -> None:
    probe = _testing.LockedProbe(0, 5)
    assert probe.size == 0
    assert probe.pattern_digest() == hashlib.sha256(b"").hexdigest()
    probe.release()


def test_probe_size_is_bounded() -> None:
    with pytest.raises(ValueError, match="at most"):
        _testing.LockedProbe(1 << 40, 1)
    with pytest.raises(OverflowError):
        _testing.LockedProbe(-1, 1)


@pytest.mark.parametrize("size", [1, PAGE - 16, PAGE, 3 * PAGE + 7])
def test_write_past_the_end_crashes(size: int) -> None:
    result = run_python(
        f"from nomyo_native._core import _testing; _testing.probe_overflow({size}, 1)"
    )
    assert result.returncode in (-signal.SIGSEGV, -signal.SIGBUS), (
        result.returncode,
        result.stderr[-2000:],
    )


def test_probe_overflow_control_without_overflow_exits_cleanly() -> None:
    result = run_python("from nomyo_native._core import _testing; _testing.probe_overflow(4000, 0)")
    assert result.returncode == 0, result.stderr[-2000:]


def test_lock_failure_degrades_to_wipe_only_and_is_counted() -> None:
    code = """
        import ctypes, hashlib, json, resource
        from nomyo_native import _core
        from nomyo_native._core import _testing

        def vm_flags(address):
            inside = False
            for line in open("/proc/self/smaps"):
                head = line.split()[0]
                if "-" in head and ":" not in head:
                    start, end = (int(x, 16) for x in head.split("-"))
                    inside = start <= address < end
                elif inside and line.startswith("VmFlags:"):
                    return line.split()[1:]

        _soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 * 1024, hard))
        s0 = _core.memory_status()
        big = _testing.LockedProbe(1 << 20, 5)
        s1 = _core.memory_status()
        with open("/proc/self/mem", "rb", buffering=0) as mem:
            mem.seek(big.address)
            content_ok = hashlib.sha256(mem.read(1 << 20)).hexdigest() == big.pattern_digest()
        big_locked = big.locked
        big_flags = vm_flags(big.address)
        big.release()
        s2 = _core.memory_status()
        small = _testing.LockedProbe(1000, 6)
        s3 = _core.memory_status()
        ba = bytearray(b"k" * (1 << 20))
        lock = _core.BufferLock(ba)
        buffer_locked = lock.locked
        buffer_flags = vm_flags(ctypes.addressof((ctypes.c_char * len(ba)).from_buffer(ba)) + 4096)
        lock.wipe()
        lock.release()
        print(json.dumps(dict(s0=s0, s1=s1, s2=s2, s3=s3, big_locked=big_locked,
                              small_locked=small.locked, content_ok=content_ok,
                              buffer_locked=buffer_locked, buffer_wiped=ba.count(0) == len(ba),
                              big_flags=big_flags, buffer_flags=buffer_flags,
                              s4=_core.memory_status())))
    """
    result = run_python(code, prefix=without_lock_privilege())
    assert result.returncode == 0, result.stderr[-2000:]
    r = json.loads(result.stdout)
    assert r["s0"]["lock_limit_bytes"] == 64 * 1024
    assert r["big_locked"] is False
    assert r["content_ok"] is True  # still a working buffer
    assert r["s1"]["lock_failures"] == r["s0"]["lock_failures"] + 1
    assert r["s1"]["method"] == "zero-only"
    assert r["s1"]["buffers_live"] == r["s0"]["buffers_live"] + 1
    # The failed lock emptied the pool (to make room) before it was retried, and failed again.
    assert r["s1"]["bytes_pooled"] == 0
    assert r["s1"]["bytes_locked"] == r["s0"]["bytes_locked"] - r["s0"]["bytes_pooled"]
    # Wipe-only buffers stay out of core dumps.
    assert r["s1"]["dump_exclusion"] is True
    assert "dd" in r["big_flags"] and "lo" not in r["big_flags"]
    assert "dd" in r["buffer_flags"] and "lo" not in r["buffer_flags"]
    assert r["s2"]["buffers_live"] == r["s0"]["buffers_live"]
    # Under the limit, locking works again.
    assert r["small_locked"] is True
    assert r["s3"]["method"] == "mlock"
    assert r["s3"]["bytes_locked"] >= PAGE
    # A caller's buffer over the limit is wipe-only too, and still wiped.
    assert r["buffer_locked"] is False
    assert r["buffer_wiped"] is True
    assert r["s4"]["lock_failures"] == r["s1"]["lock_failures"] + 1


def test_pool_gives_way_when_the_lock_limit_is_reached() -> None:
    code = """
        import json, resource
        from nomyo_native import _core
        from nomyo_native._core import _testing

        _soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (512 * 1024, hard))
        held = [_testing.LockedProbe(100_000, seed) for seed in (1, 2)]
        del held  # both pooled
        s0 = _core.memory_status()
        probe = _testing.LockedProbe(400_000, 3)
        s1 = _core.memory_status()
        print(json.dumps(dict(s0=s0, s1=s1, locked=probe.locked)))
    """
    result = run_python(code, prefix=without_lock_privilege())
    assert result.returncode == 0, result.stderr[-2000:]
    r = json.loads(result.stdout)
    s0, s1 = r["s0"], r["s1"]
    assert s0["pool_limit_bytes"] == 256 * 1024
    assert s0["bytes_pooled"] >= 200_000
    # 400 kB do not fit next to the pool under 512 KiB; emptying the pool made room.
    assert r["locked"] is True
    assert s1["lock_failures"] == s0["lock_failures"]
    assert s1["bytes_pooled"] == 0
    assert s1["bytes_locked"] >= 400_000


# ---- BufferLock / wipe ---------------------------------------------------------------------------


def test_buffer_lock_locks_excludes_and_blocks_resizing() -> None:
    secret = bytearray(os.urandom(200_000))
    require_lock_budget(len(secret))
    before_kib = vmlck_kib()
    with _core.BufferLock(secret) as lock:
        assert lock.locked
        assert lock.size == len(secret)
        assert vmlck_kib() - before_kib >= len(secret) // 1024
        flags = vm_flags(buffer_address(secret) + len(secret) // 2)
        assert {"lo", "dd"} <= flags, flags
        with pytest.raises(BufferError):
            secret.append(1)
        with pytest.raises(BufferError):
            del secret[0]
        assert secret.count(0) < len(secret)
    assert secret.count(0) == len(secret)  # wiped on exit
    assert vmlck_kib() <= before_kib + 4
    secret.append(1)  # the export is gone: resizing works again
    assert len(secret) == 200_001


def test_buffer_lock_wipes_on_exception() -> None:
    secret = bytearray(b"sk-live-" + os.urandom(64))
    with pytest.raises(RuntimeError, match="boom"):
        with _core.BufferLock(secret):
            raise RuntimeError("boom")
    assert secret == bytearray(len(secret))


def test_buffer_lock_release_does_not_wipe() -> None:
    data = bytearray(b"keep me")
    lock = _core.BufferLock(data)
    lock.release()
    assert data == b"keep me"
    assert not lock.locked
    assert lock.size == 7
    with pytest.raises(ValueError, match="released"):
        lock.wipe()
    lock.release()
    data.extend(b"!")  # no longer exported
    assert data == b"keep me!"


def test_buffer_lock_refuses_unsuitable_buffers() -> None:
    with pytest.raises(TypeError, match="read-only"):
        _core.BufferLock(b"immutable bytes")
    with pytest.raises(TypeError, match="read-only"):
        _core.BufferLock(memoryview(bytearray(8)).toreadonly())
    with pytest.raises(TypeError, match="writable buffer"):
        _core.BufferLock("a str is not a buffer")
    with pytest.raises(ValueError, match="contiguous"):
        _core.BufferLock(memoryview(bytearray(16))[::2])


def test_overlapping_page_locks_are_reference_counted() -> None:
    # Two small buffers in one page: releasing the first must not unlock the second.
    require_lock_budget(2 * PAGE)
    pool = bytearray(64)
    view = memoryview(pool)
    first, second = view[:32], view[32:]
    lock_a = _core.BufferLock(first)
    lock_b = _core.BufferLock(second)
    address = buffer_address(pool)
    assert lock_a.locked and lock_b.locked
    lock_a.release()
    assert "lo" in vm_flags(address)
    lock_b.release()
    view.release()


def test_empty_buffer_lock() -> None:
    with _core.BufferLock(bytearray()) as lock:
        assert lock.size == 0
        lock.wipe()


def test_wipe_function() -> None:
    data = bytearray(b"0123456789")
    _core.wipe(memoryview(data)[2:5])
    assert data == b"01\x00\x00\x0056789"
    _core.wipe(data)
    assert data == bytearray(10)
    numbers = array.array("i", [1, 2, 3])
    _core.wipe(numbers)
    assert list(numbers) == [0, 0, 0]
    with pytest.raises(TypeError, match="read-only"):
        _core.wipe(b"bytes")
    with pytest.raises(TypeError, match="writable buffer"):
        _core.wipe(12)
    data.append(1)  # wipe() does not keep the buffer exported
