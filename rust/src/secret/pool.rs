//! Wiped, still locked mappings kept for reuse.
//!
//! Bounds: mappings of `MIN_SPAN` (4 KiB) up to `MAX_SPAN` (16 MiB) of locked pages are
//! pooled, at most `PER_CLASS` per power-of-two size class, and at most `limit()` bytes in
//! all: 12 MiB, or half of RLIMIT_MEMLOCK when that is lower and binds (4 MiB under the usual
//! 8 MiB; CAP_IPC_LOCK lifts it), so that buffers in use always keep the other half. Only locked mappings are pooled, and
//! what is counted is their locked pages. An allocation whose lock fails empties the pool and
//! tries again.
//!
//! A request takes the smallest pooled mapping that holds it and is at most twice its size
//! (so a reused mapping never locks more than double what a fresh one would).
//!
//! Like aws-lc's heap (`lc_heap`), the pool sits behind a spin lock that `fork` holds across
//! the fork: a child never inherits it held or half-updated. The child's copies of the pooled
//! pages are not locked (mlock is not inherited), so the child drops them on its first use of
//! the pool.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::mapping::Mapping;
use super::status::BYTES_POOLED;
#[cfg(unix)]
use super::status::{BYTES_LOCKED, BYTES_UNLOCKED, GENERATION};

pub const MIN_SPAN: usize = 4 * 1024;
pub const MAX_SPAN: usize = 16 * 1024 * 1024;
pub const MAX_BYTES: usize = 12 * 1024 * 1024;
pub const PER_CLASS: usize = 2;
const CLASSES: usize = (MAX_SPAN.trailing_zeros() - MIN_SPAN.trailing_zeros()) as usize + 1;
const SLOTS: usize = CLASSES * PER_CLASS;

struct Pool {
    slots: [Option<Mapping>; SLOTS],
    bytes: usize,
    /// Set in a fork child: every slot is the parent's and no longer locked.
    inherited: bool,
}

struct PoolLock {
    held: AtomicBool,
    pool: UnsafeCell<Pool>,
}

// SAFETY: `pool` is only reached while `held` is ours (`with_pool`, the fork handlers).
unsafe impl Sync for PoolLock {}

const EMPTY: Option<Mapping> = None;
static POOL: PoolLock = PoolLock {
    held: AtomicBool::new(false),
    pool: UnsafeCell::new(Pool {
        slots: [EMPTY; SLOTS],
        bytes: 0,
        inherited: false,
    }),
};

fn acquire() {
    while POOL
        .held
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
}

fn release() {
    POOL.held.store(false, Ordering::Release);
}

/// Run `f` on the pool under its lock, after dropping what a fork child inherited. `f`
/// must neither allocate through the pool nor panic (it only moves slots and adds).
fn with_pool<R>(f: impl FnOnce(&mut Pool) -> R) -> R {
    crate::fork::install();
    acquire();
    // SAFETY: the lock is ours until `release`.
    let pool = unsafe { &mut *POOL.pool.get() };
    let stale = if pool.inherited {
        pool.inherited = false;
        Some(take_all(pool))
    } else {
        None
    };
    let result = f(pool);
    release();
    if let Some(stale) = stale {
        free_all(stale);
    }
    result
}

fn take_all(pool: &mut Pool) -> [Option<Mapping>; SLOTS] {
    pool.bytes = 0;
    std::mem::replace(&mut pool.slots, [EMPTY; SLOTS])
}

/// Free mappings taken out of the pool (they are all zero already).
fn free_all(slots: [Option<Mapping>; SLOTS]) -> usize {
    let mut freed = 0;
    for mapping in slots.into_iter().flatten() {
        BYTES_POOLED.fetch_sub(mapping.span, Ordering::SeqCst);
        freed += mapping.span;
        mapping.free();
    }
    freed
}

/// `fork` prepare handler (see `crate::fork`): hold the pool so no thread is halfway through an
/// update.
#[cfg(unix)]
pub(crate) fn before_fork() {
    acquire();
}

/// `fork` parent handler: the fork is done, the pool is free again.
#[cfg(unix)]
pub(crate) fn after_fork_parent() {
    release();
}

/// `fork` child handler: nothing the child inherited is locked, so every live buffer (and the
/// pool, dropped on its first use) counts as unlocked from now on.
#[cfg(unix)]
pub(crate) fn after_fork_child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
    let inherited = BYTES_LOCKED.swap(0, Ordering::SeqCst);
    BYTES_UNLOCKED.fetch_add(inherited, Ordering::SeqCst);
    // SAFETY: the prepare handler holds the lock for this (now the only) thread.
    unsafe { (*POOL.pool.get()).inherited = true };
    release();
}

/// The size class of a span: 0 for 4 KiB up to (not including) 8 KiB, and so on.
pub fn class(span: usize) -> Option<usize> {
    poolable(span).then(|| (span.ilog2() - MIN_SPAN.ilog2()) as usize)
}

pub fn poolable(span: usize) -> bool {
    (MIN_SPAN..=MAX_SPAN).contains(&span)
}

/// Most bytes the pool keeps: `MAX_BYTES`, or half of RLIMIT_MEMLOCK when lower and it binds
/// (as last read: see `lock_limit`). Where it does not bind (CAP_IPC_LOCK), halving it would
/// keep nothing free for anybody: every megabyte-sized buffer beyond the half was mapped,
/// locked (a page fault per 4 KiB) and unmapped again per request.
pub fn limit() -> usize {
    match lock_limit() {
        Some(lock_limit) if !LOCKS_PAST_LIMIT.load(Ordering::Relaxed) => {
            MAX_BYTES.min(usize::try_from(lock_limit / 2).unwrap_or(MAX_BYTES))
        }
        _ => MAX_BYTES,
    }
}

/// RLIMIT_MEMLOCK's soft limit as last read, `UNREAD` before the first read, `UNLIMITED` for
/// none. Every buffer's drop checks the pool's bound, and reading the limit each time was a
/// system call per drop (four per small request). It is read again by `memory_status` (so
/// that what it reports is current) and after every failed lock (a lowered limit shows itself
/// so, and the allocation that failed empties the pool as before). Until then a limit raised
/// at run time leaves the pool smaller than it could be; a lowered one is noticed at the
/// first lock it refuses.
static LOCK_LIMIT: AtomicU64 = AtomicU64::new(UNREAD);
const UNREAD: u64 = u64::MAX;
const UNLIMITED: u64 = u64::MAX - 1;

/// RLIMIT_MEMLOCK's soft limit (`None`: unlimited), as last read.
pub fn lock_limit() -> Option<u64> {
    match LOCK_LIMIT.load(Ordering::Relaxed) {
        UNREAD => read_lock_limit(),
        UNLIMITED => None,
        limit => Some(limit),
    }
}

/// Whether `mlock` goes past RLIMIT_MEMLOCK here (`os::locks_past_limit`), read with it.
static LOCKS_PAST_LIMIT: AtomicBool = AtomicBool::new(false);

/// Read RLIMIT_MEMLOCK's soft limit now, and whether it binds, and remember them for
/// `lock_limit` and `limit`.
pub fn read_lock_limit() -> Option<u64> {
    LOCKS_PAST_LIMIT.store(super::os::locks_past_limit(), Ordering::Relaxed);
    let limit = super::os::lock_limit();
    let stored = limit.map_or(UNLIMITED, |n| n.min(UNLIMITED - 1));
    LOCK_LIMIT.store(stored, Ordering::Relaxed);
    limit
}

/// The smallest pooled mapping with room for `capacity` bytes and at most twice `span`.
pub fn take(capacity: usize, span: usize) -> Option<Mapping> {
    let mapping = with_pool(|pool| {
        let best = pool
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| slot.as_ref().map(|m| (i, m)))
            .filter(|(_, m)| m.len >= capacity && m.span <= span.saturating_mul(2))
            .min_by_key(|(_, m)| m.span)
            .map(|(i, _)| i)?;
        let mapping = pool.slots[best].take()?;
        pool.bytes -= mapping.span;
        BYTES_POOLED.fetch_sub(mapping.span, Ordering::SeqCst);
        Some(mapping)
    })?;
    mapping.check_canary();
    Some(mapping)
}

/// Keep a wiped, locked mapping, or hand it back when its class is full or the pool would
/// pass its limit even after making way for it. Smaller pooled mappings make way for a bigger
/// one (they are freed): a fresh mapping costs in proportion to its size (mlock faults in and
/// the kernel clears every page), and one big mapping serves every smaller request down to
/// half its size, so a request that alternates a 2.6 MB staging buffer for its seal and a
/// 2.3 MB one for its open reuses one mapping instead of creating one of them each time.
pub fn put(mapping: Mapping) -> Result<(), Mapping> {
    let Some(class) = class(mapping.span) else {
        return Err(mapping);
    };
    let limit = limit();
    let mut evicted = [EMPTY; SLOTS];
    let kept = with_pool(|pool| {
        let slots = &pool.slots[class * PER_CLASS..(class + 1) * PER_CLASS];
        if !slots.iter().any(Option::is_none) {
            return Err(mapping);
        }
        let over = (pool.bytes + mapping.span).saturating_sub(limit);
        let smaller: usize = pool
            .slots
            .iter()
            .flatten()
            .filter(|m| m.span < mapping.span)
            .map(|m| m.span)
            .sum();
        if smaller < over {
            return Err(mapping);
        }
        let mut freed = 0;
        while freed < over {
            // The smallest first; `smaller >= over` guarantees one is left while short.
            let Some(index) = pool
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, slot)| slot.as_ref().map(|m| (i, m.span)))
                .filter(|&(_, span)| span < mapping.span)
                .min_by_key(|&(_, span)| span)
                .map(|(i, _)| i)
            else {
                break;
            };
            if let Some(small) = pool.slots[index].take() {
                pool.bytes -= small.span;
                BYTES_POOLED.fetch_sub(small.span, Ordering::SeqCst);
                freed += small.span;
                evicted[index] = Some(small);
            }
        }
        let slots = &mut pool.slots[class * PER_CLASS..(class + 1) * PER_CLASS];
        let Some(free) = slots.iter_mut().find(|s| s.is_none()) else {
            return Err(mapping);
        };
        pool.bytes += mapping.span;
        BYTES_POOLED.fetch_add(mapping.span, Ordering::SeqCst);
        *free = Some(mapping);
        Ok(())
    });
    // Outside the lock: unlocking and unmapping are system calls. (Pooled: all zero.)
    for small in evicted.into_iter().flatten() {
        small.free();
    }
    kept
}

/// Free pooled mappings, the smallest first, until the pool is within `limit()` again: a
/// lowered RLIMIT_MEMLOCK, once read, leaves no more pooled than its new bound. Returns the
/// bytes released.
pub fn trim_to_limit() -> usize {
    let limit = limit();
    let mut over_limit = [EMPTY; SLOTS];
    with_pool(|pool| {
        while pool.bytes > limit {
            let Some(index) = pool
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, slot)| slot.as_ref().map(|m| (i, m.span)))
                .min_by_key(|&(_, span)| span)
                .map(|(i, _)| i)
            else {
                break;
            };
            if let Some(mapping) = pool.slots[index].take() {
                pool.bytes -= mapping.span;
                over_limit[index] = Some(mapping);
            }
        }
    });
    // Outside the lock, as in `put`; `free_all` settles `BYTES_POOLED`.
    free_all(over_limit)
}

/// Free every pooled mapping; returns the bytes released.
pub fn release_all() -> usize {
    free_all(with_pool(take_all))
}

/// The pooled bytes (settling first what a fork child inherited).
pub fn bytes() -> usize {
    with_pool(|pool| pool.bytes)
}

/// The pooled bytes, and whether every pooled mapping is all zero (for tests).
#[cfg(test)]
pub fn audit() -> (usize, bool) {
    with_pool(|pool| {
        let zero = pool.slots.iter().flatten().all(|m| {
            // SAFETY: a pooled mapping's `len` data bytes are mapped and only we touch them.
            let data = unsafe { std::slice::from_raw_parts(m.base.as_ptr(), m.len) };
            data.iter().all(|&b| b == 0)
        });
        (pool.bytes, zero)
    })
}

/// Free the wiped buffers the reuse pool holds (their pages are unlocked and unmapped);
/// returns the bytes released. The pool refills as buffers are dropped.
pub fn release_pool() -> usize {
    release_all()
}
