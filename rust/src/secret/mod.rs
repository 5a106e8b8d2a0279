//! `LockedBuf`: the one place every secret lives.
//!
//! Each buffer is a `memsec` guarded allocation: a no-access guard page on both sides, a random
//! canary just before the data (checked on free, the process aborts if it was overwritten), and
//! the data placed flush against the trailing guard page so that the first byte written past
//! the end faults. memsec's `malloc` also calls `madvise(MADV_DONTDUMP)` and `mlock` on the
//! data pages but ignores both results, so we repeat both calls on the same pages and record
//! what really happened: re-locking already locked pages succeeds without charging
//! RLIMIT_MEMLOCK twice, and a failed lock fails again. When locking fails the buffer still
//! works (wipe-only) and the failure is counted. Drop wipes with `zeroize`; memsec's `free`
//! (memsec 0.7) then checks the canary, unlocks and frees, but neither zeroes nor re-enables
//! dumping, so the wipe is ours alone.
//!
//! Mapping and locking fresh pages is most of the cost of a buffer (mlock faults in every page
//! of a big one; a small one costs about ten system calls), so locked buffers are not freed
//! when dropped but wiped and kept, still guarded, locked and dump-excluded, in a small
//! bounded pool (`pool`) that later allocations take from. A reused mapping is at least as big
//! as asked for; the data is placed flush against its trailing guard page as before, and the
//! slack before it stays zero.
//!
//! The same page helpers lock a caller's Python buffer (`BufferLock`): those pages are shared
//! with other heap objects, so their locks are reference-counted per page.
//!
//! The parts: `buffer` (`LockedBuf`), `mapping` (one memsec allocation and its canary), `pool`
//! (wiped mappings kept for reuse), `pages` (whole-page arithmetic and the locks on a caller's
//! pages), `status` (the process-wide counters `memory_status` reports), `os` (the platform
//! calls).

mod buffer;
mod mapping;
mod os;
mod pages;
mod pool;
mod status;
#[cfg(test)]
mod tests;

pub use buffer::LockedBuf;
pub use pages::{lock_pages, unlock_pages};
pub use pool::release_pool;
#[cfg(unix)]
pub(crate) use pool::{after_fork_child, after_fork_parent, before_fork};
pub use status::{fork_generation, memory_status, MemoryStatus};

use zeroize::Zeroize;

/// The one-time initialisations of locked memory (memsec's setup, its canary, the shared-page
/// table), done at once rather than by the first allocation: a `fork` from another thread
/// during a one-time initialisation leaves the child waiting forever on it (see
/// `mapping::initialise`). Module initialisation calls it; later calls do nothing.
pub fn initialise() {
    mapping::initialise();
    let _ = pages::shared_pages();
}

/// True when `initialise` has run (or an allocation did its work).
pub fn initialised() -> bool {
    mapping::initialised() && pages::shared_pages_ready()
}

/// Zero `len` bytes at `ptr` in a way the optimizer keeps.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
pub unsafe fn wipe_raw(ptr: *mut u8, len: usize) {
    if len > 0 {
        // SAFETY: the caller's contract (non-null and in bounds, as `len > 0`).
        unsafe { std::slice::from_raw_parts_mut(ptr, len).zeroize() };
    }
}
