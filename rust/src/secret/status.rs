//! The process-wide counters of locked memory, and `memory_status`, which reads them.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use super::{os, pool, LockedBuf};

pub(super) static BYTES_LOCKED: AtomicUsize = AtomicUsize::new(0);
/// Pages of live LockedBufs that are not locked: wipe-only ones, and in a fork child every
/// one it inherited (locks are not inherited).
pub(super) static BYTES_UNLOCKED: AtomicUsize = AtomicUsize::new(0);
/// Bumped in every fork child: a mapping locked under another generation is not locked here.
pub(super) static GENERATION: AtomicU32 = AtomicU32::new(0);
pub(super) static BUFFERS_LIVE: AtomicUsize = AtomicUsize::new(0);
/// Locked bytes (whole pages) held by the pool: part of `BYTES_LOCKED`, not in use.
pub(super) static BYTES_POOLED: AtomicUsize = AtomicUsize::new(0);
static LOCK_FAILURES: AtomicU64 = AtomicU64::new(0);
static LOCK_ATTEMPTS: AtomicU64 = AtomicU64::new(0);
/// Outcome of the most recent lock attempt (`TRI_*`).
static LAST_LOCK: AtomicU8 = AtomicU8::new(TRI_UNKNOWN);
/// Outcome of dump exclusion: `TRI_NO` is sticky once any madvise failed.
static DUMP_EXCLUSION: AtomicU8 = AtomicU8::new(TRI_UNKNOWN);

const TRI_UNKNOWN: u8 = 0;
const TRI_YES: u8 = 1;
const TRI_NO: u8 = 2;

/// A snapshot of the core's locked memory, for `memory_status()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryStatus {
    /// True when the most recent lock attempt succeeded (otherwise buffers are wipe-only).
    pub mlock_works: bool,
    /// The platform name (`linux`, `darwin`, `windows`, ...).
    pub platform: &'static str,
    /// Bytes (whole pages) the core holds locked right now: LockedBufs (pooled ones included),
    /// callers' BufferLocks and aws-lc's heap.
    pub bytes_locked: usize,
    /// Bytes holding secrets that are not locked right now: wipe-only LockedBufs, aws-lc heap
    /// pages past the limit, and in a fork child what it inherited and could not lock again.
    pub bytes_unlocked: usize,
    /// LockedBufs in use (pooled mappings are not counted).
    pub buffers_live: usize,
    /// Of `bytes_locked`, the bytes of wiped buffers kept in the reuse pool.
    pub bytes_pooled: usize,
    /// Most bytes the reuse pool keeps (`pool_limit`).
    pub pool_limit_bytes: usize,
    /// Failed lock attempts of LockedBufs, BufferLocks and aws-lc's heap.
    pub lock_failures: u64,
    /// Lock attempts of LockedBufs and BufferLocks (successful or not).
    pub lock_attempts: u64,
    /// aws-lc's locked heap (its part of the totals above).
    pub lc_heap: crate::lc_heap::Stats,
    /// MADV_DONTDUMP applied successfully (always false off Linux).
    pub dump_exclusion: bool,
    /// memsec guard pages surround every buffer on the supported platforms.
    pub guard_pages: bool,
    /// RLIMIT_MEMLOCK soft limit in bytes; `None` when unlimited or not applicable.
    pub lock_limit_bytes: Option<u64>,
}

/// Read the counters. When nothing was locked yet, a one-byte probe buffer finds out whether
/// locking and dump exclusion work, so the answer is never a guess.
pub fn memory_status() -> MemoryStatus {
    if LAST_LOCK.load(Ordering::SeqCst) == TRI_UNKNOWN {
        // An allocation failure here just leaves the state unknown (reported as not working).
        let _probe = LockedBuf::zeroed(1);
    }
    // The limit as it is now, for the report and the pool's bound alike.
    let lock_limit_bytes = pool::read_lock_limit();
    // A lowered limit: the pool gives back what its new bound does not cover.
    pool::trim_to_limit();
    // First: in a fork child this drops the inherited pool, which changes `BYTES_UNLOCKED`,
    // and re-locks aws-lc's heap.
    let bytes_pooled = pool::bytes();
    let lc_heap = crate::lc_heap::stats();
    MemoryStatus {
        mlock_works: LAST_LOCK.load(Ordering::SeqCst) == TRI_YES,
        platform: os::PLATFORM,
        bytes_locked: BYTES_LOCKED.load(Ordering::SeqCst) + lc_heap.locked_bytes,
        bytes_unlocked: BYTES_UNLOCKED.load(Ordering::SeqCst) + lc_heap.unlocked_bytes,
        buffers_live: BUFFERS_LIVE.load(Ordering::SeqCst),
        bytes_pooled,
        pool_limit_bytes: pool::limit(),
        lock_failures: LOCK_FAILURES.load(Ordering::SeqCst) + lc_heap.lock_failures as u64,
        lock_attempts: LOCK_ATTEMPTS.load(Ordering::SeqCst),
        lc_heap,
        dump_exclusion: DUMP_EXCLUSION.load(Ordering::SeqCst) == TRI_YES,
        guard_pages: os::GUARD_PAGES,
        lock_limit_bytes,
    }
}

/// Subtract without wrapping (counts inherited across a fork may already have been moved).
pub(super) fn sub(counter: &AtomicUsize, n: usize) {
    let _ = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
        Some(v.saturating_sub(n))
    });
}

pub(super) fn record_lock(ok: bool, bytes: usize) {
    LOCK_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    if ok {
        BYTES_LOCKED.fetch_add(bytes, Ordering::SeqCst);
        LAST_LOCK.store(TRI_YES, Ordering::SeqCst);
    } else {
        LOCK_FAILURES.fetch_add(1, Ordering::SeqCst);
        LAST_LOCK.store(TRI_NO, Ordering::SeqCst);
        // The limit may have been lowered since the pool last read it.
        pool::read_lock_limit();
    }
}

pub(super) fn record_dump_exclusion(outcome: Option<bool>) {
    match outcome {
        Some(true) => {
            let _ = DUMP_EXCLUSION.compare_exchange(
                TRI_UNKNOWN,
                TRI_YES,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        Some(false) => DUMP_EXCLUSION.store(TRI_NO, Ordering::SeqCst),
        None => {}
    }
}

/// The fork generation of this process: bumped in every fork child, so that whatever was locked
/// under another generation is known not to be locked here.
pub fn fork_generation() -> u32 {
    GENERATION.load(Ordering::SeqCst)
}
