"""The caller-facing memory API over the core: nomyo 0.2.9's names, real locking and wiping."""

from __future__ import annotations

import re
import sys
import warnings

import pytest
from tests.reference import run_reference

import nomyo_native
from nomyo_native import _core
from nomyo_native.SecureMemory import secure_bytearray as compat_secure_bytearray


def vm_locked_kib() -> int:
    with open("/proc/self/status") as fh:
        match = re.search(r"^VmLck:\s+(\d+) kB", fh.read(), re.MULTILINE)
    assert match is not None
    return int(match.group(1))


@pytest.mark.reference
def test_protection_info_has_every_reference_key_plus_core_status():
    ours = nomyo_native.get_memory_protection_info()
    reference = run_reference("memory-info")["keys"]
    assert reference, "the reference reports its protection info"
    assert set(reference) <= set(ours)
    core = _core.memory_status()
    # Every core counter is passed on (bytes_pooled, pool_limit_bytes, ...), except the core's
    # "platform", which nomyo's own key of that name (sys.platform) takes precedence over.
    assert set(core) - {"platform"} <= set(ours)
    assert {"bytes_pooled", "pool_limit_bytes", "bytes_locked", "lock_failures"} <= set(ours)
    assert ours["platform"] == sys.platform
    assert ours["method"] in ("mlock", "zero-only")
    assert ours["has_memory_locking"] == (ours["method"] == "mlock")
    expected_level = "full" if ours["method"] == "mlock" else "zeroing_only"
    assert ours["protection_level"] == expected_level
    assert ours["supports_full_protection"] == (expected_level == "full")


def test_disable_and_enable_secure_memory():
    try:
        nomyo_native.disable_secure_memory()
        info = nomyo_native.get_memory_protection_info()
        assert info["enabled"] is False and info["protection_level"] == "none"
        with nomyo_native.secure_bytearray(bytearray(b"abc")) as buf:
            assert not buf.locked
    finally:
        nomyo_native.enable_secure_memory()
    assert nomyo_native.get_memory_protection_info()["enabled"] is True


def test_secure_bytearray_wipes_the_original_and_the_buffer():
    original = bytearray(b"top secret " * 100)
    with nomyo_native.secure_bytearray(original) as buf:
        assert original == bytearray(len(original)), "the caller's copy is wiped at once"
        assert bytes(buf.data) == b"top secret " * 100
        assert len(buf) == buf.size == 1100 and buf.address != 0
        held = buf.data
    assert held == bytearray(1100)


def test_secure_bytearray_wipes_on_exceptions():
    with pytest.raises(RuntimeError, match="boom"):
        with compat_secure_bytearray(b"secret material") as buf:
            held = buf.data
            raise RuntimeError("boom")
    assert held == bytearray(len(b"secret material"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_lock_is_a_real_mlock_through_the_core():
    if nomyo_native.get_memory_protection_info()["method"] != "mlock":
        pytest.skip("the core runs wipe-only here (no mlock)")
    size = 256 * 1024
    before = vm_locked_kib()
    with nomyo_native.secure_bytearray(bytearray(size)) as buf:
        assert buf.locked
        assert vm_locked_kib() >= before + size // 1024 - 4
        with pytest.raises(BufferError):
            buf.data.extend(b"x")  # a locked buffer cannot move
    assert vm_locked_kib() <= before + 4


def test_secure_bytes_is_a_deprecated_alias():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with nomyo_native.secure_bytes(b"legacy") as buf:
            assert bytes(buf.data) == b"legacy"
            held = buf.data
    assert held == bytearray(6)
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)


def test_secure_buffer_rejects_non_bytes():
    with pytest.raises(TypeError, match="bytes"):
        nomyo_native.SecureBuffer("a str")  # type: ignore[arg-type]
