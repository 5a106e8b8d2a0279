//! A locked, wiped heap for aws-lc's own allocations.
//!
//! aws-lc keeps the RSA private key (its big numbers, Montgomery and blinding state), the AES-GCM
//! key schedule and every OAEP scratch buffer in memory it gets from `OPENSSL_malloc`. By default
//! that is the ordinary heap: wiped on free (aws-lc cleanses in `OPENSSL_free`), but swappable and
//! included in core dumps for as long as it lives, which for a client key pair is the whole
//! session. `install` routes those allocations here instead (`CRYPTO_set_mem_functions`):
//!
//! - blocks up to `MAX_BLOCK` bytes come from slabs that are `MADV_DONTDUMP` and `mlock`ed page
//!   by page as blocks are placed in them (within `MAX_LOCKED_BYTES`, so LockedBufs keep most
//!   of RLIMIT_MEMLOCK). A page's lock follows its use: when the limit left pages in use
//!   unlocked (key generation's peak), pages that fall empty give their lock to those, so what
//!   stays live (the key) ends up locked under a small limit (64 KiB, a common container
//!   default), where locking whole slabs left it in unlocked memory;
//! - larger blocks (scrypt's tables) get a mapping each, dump-excluded and locked when the limit
//!   allows;
//! - every block is zeroed when freed, whatever its origin;
//! - what could not be locked is counted (`stats`), and `secret::memory_status` reports it;
//! - a fork child re-locks the slabs it inherited (locks are not inherited) the first time it
//!   enters aws-lc or reads the status; big blocks it inherited are reported as unlocked.
//!
//! `install` must run before aws-lc allocates anything (module init does it); a pointer that was
//! allocated earlier by aws-lc's default allocator is still recognised and freed correctly.
//!
//! It also makes the core fork-safe: every entry into aws-lc holds an `InsideLc`, and a
//! `pthread_atfork` prepare handler waits until none is held (and takes the pool lock), so a
//! child never inherits a key whose state another thread was updating.
//!
//! The parts: `pool` (the slabs, their free lists and page locks, and the allocator over them),
//! `gate` (the fork gate and the fork handlers), `sys` (the platform's mappings and locks).

mod gate;
mod pool;
mod sys;
#[cfg(test)]
mod tests;
// Windows: VirtualAlloc'ed pages, locked with VirtualLock within the working set (see win.rs).
#[cfg(windows)]
mod windows;

use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Once;

#[cfg(unix)]
pub(crate) use gate::{after_fork_child, after_fork_parent, before_fork};
pub use gate::{enter, InsideLc};
pub use pool::free_blocks_are_wiped;
use pool::{allocate, release, relock_after_fork, usable_size};

const MAGIC: u32 = 0x4e4c_434b; // "NLCK"
const HEADER: usize = 16;
const KIND_POOL: u8 = 1;
/// From `malloc` (platforms without the mapping calls): neither locked nor dump-excluded.
const KIND_SYSTEM: u8 = 2;
/// A mapping of its own (blocks over `MAX_BLOCK`).
const KIND_MAPPED: u8 = 3;
/// Smallest block: 32 bytes (2^5), header included.
const MIN_SHIFT: usize = 5;
/// Largest pooled block: 32 KiB (2^15), header included.
const MAX_SHIFT: usize = 15;
const CLASSES: usize = MAX_SHIFT - MIN_SHIFT + 1;
/// Largest block (header included) served from the slabs; bigger ones get a mapping each.
pub const MAX_BLOCK: usize = 1 << MAX_SHIFT;
const SLAB_BYTES: usize = 128 * 1024;
/// Locked slab pages the heap may take; beyond it they are dump-excluded and wiped, not locked.
pub const MAX_LOCKED_BYTES: usize = 1024 * 1024;
/// Most slabs (16 MiB of small blocks); past it small blocks get mappings of their own.
const MAX_SLABS: usize = 128;
/// Most pages per slab the page tables below track (a 2 KiB page at least).
const MAX_SLAB_PAGES: usize = 64;
/// Big blocks remembered for re-locking in a fork child (others count as unlocked there).
const MAX_TRACKED_BIG: usize = 32;
/// aws-lc's default allocator stores the size in the 8 bytes before the pointer.
const FOREIGN_PREFIX: usize = 8;

static INSTALLED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
/// Slab pages locked now (in use, or empty and kept locked for reuse), and slab pages in use
/// that are not locked (the limit was reached, or a fork child could not lock them again).
static SLAB_LOCKED: AtomicUsize = AtomicUsize::new(0);
static SLAB_UNLOCKED: AtomicUsize = AtomicUsize::new(0);
/// Pages of live big blocks (and `malloc` blocks, never locked).
static MAPPED_LOCKED: AtomicUsize = AtomicUsize::new(0);
static MAPPED_UNLOCKED: AtomicUsize = AtomicUsize::new(0);
static SLAB_TOTAL: AtomicUsize = AtomicUsize::new(0);
static LOCK_FAILURES: AtomicUsize = AtomicUsize::new(0);
static LIVE_POOL_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static LIVE_MAPPED_BLOCKS: AtomicUsize = AtomicUsize::new(0);
/// Bumped in every fork child: a big block locked under another generation is not locked here.
static GENERATION: AtomicU8 = AtomicU8::new(0);
/// Set in a fork child until its inherited slab pages are locked again (`relock_after_fork`).
static RELOCK_PENDING: AtomicBool = AtomicBool::new(false);

/// Subtract without wrapping (counts inherited across a fork may already have been moved).
fn sub(counter: &AtomicUsize, n: usize) {
    let _ = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
        Some(v.saturating_sub(n))
    });
}

/// What the pool holds right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `install` put the heap in place.
    pub installed: bool,
    /// Slab pages in use and big blocks that are locked in RAM now.
    pub locked_bytes: usize,
    /// Slab pages in use and big blocks that are not (limit reached, or a fork child's).
    pub unlocked_bytes: usize,
    /// Of `unlocked_bytes`: pages of small blocks (keys, contexts).
    pub small_unlocked_bytes: usize,
    /// Bytes of slabs mapped so far (slabs are kept for the process's lifetime).
    pub slab_bytes: usize,
    /// Pages that could not be locked (each counted once).
    pub lock_failures: usize,
    /// Live blocks served from the slabs.
    pub live_pool_blocks: usize,
    /// Live big blocks (a mapping each, or `malloc` where there are no mappings).
    pub live_mapped_blocks: usize,
}

/// The heap's counters (in a fork child, after re-locking what it inherited).
pub fn stats() -> Stats {
    relock_after_fork();
    Stats {
        installed: INSTALLED.load(Ordering::SeqCst),
        locked_bytes: SLAB_LOCKED.load(Ordering::SeqCst) + MAPPED_LOCKED.load(Ordering::SeqCst),
        unlocked_bytes: SLAB_UNLOCKED.load(Ordering::SeqCst)
            + MAPPED_UNLOCKED.load(Ordering::SeqCst),
        small_unlocked_bytes: SLAB_UNLOCKED.load(Ordering::SeqCst),
        slab_bytes: SLAB_TOTAL.load(Ordering::SeqCst),
        lock_failures: LOCK_FAILURES.load(Ordering::SeqCst),
        live_pool_blocks: LIVE_POOL_BLOCKS.load(Ordering::SeqCst),
        live_mapped_blocks: LIVE_MAPPED_BLOCKS.load(Ordering::SeqCst),
    }
}

/// Route aws-lc's allocations through this heap and make `fork` wait for threads inside
/// aws-lc (`enter`). Returns whether the heap is in place (false on platforms without
/// mmap/mlock, or if aws-lc already had custom memory functions).
pub fn install() -> bool {
    #[cfg(any(unix, windows))]
    INSTALL.call_once(|| {
        // SAFETY: the three callbacks follow aws-lc's malloc/realloc/free contracts.
        let ok = unsafe {
            aws_lc_sys::CRYPTO_set_mem_functions(Some(lc_malloc), Some(lc_realloc), Some(lc_free))
        };
        crate::fork::install();
        INSTALLED.store(ok == 1, Ordering::SeqCst);
    });
    INSTALLED.load(Ordering::SeqCst)
}

/// aws-lc's `OPENSSL_malloc` hook.
///
/// # Safety
/// None beyond aws-lc's: the result is freed by `lc_free` (or resized by `lc_realloc`) once.
unsafe extern "C" fn lc_malloc(size: usize, _file: *const c_char, _line: c_int) -> *mut c_void {
    allocate(size) as *mut c_void
}

/// aws-lc's `OPENSSL_free` hook.
///
/// # Safety
/// `ptr` is null or a live allocation of `lc_malloc`/`lc_realloc` (or of aws-lc's default
/// allocator, before `install`), not used afterwards.
unsafe extern "C" fn lc_free(ptr: *mut c_void, _file: *const c_char, _line: c_int) {
    if !ptr.is_null() {
        // SAFETY: the caller's contract.
        unsafe { release(ptr as *mut u8) };
    }
}

/// aws-lc's `OPENSSL_realloc` hook: a fresh block, the old one copied and wiped.
///
/// # Safety
/// As `lc_free` for `ptr`, which is not used afterwards unless null is returned.
unsafe extern "C" fn lc_realloc(
    ptr: *mut c_void,
    new_size: usize,
    _file: *const c_char,
    _line: c_int,
) -> *mut c_void {
    if ptr.is_null() {
        return allocate(new_size) as *mut c_void;
    }
    let old = ptr as *mut u8;
    let fresh = allocate(new_size);
    if fresh.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `old` is a live allocation (the caller's contract) of `usable_size(old)` bytes,
    // `fresh` a new one of `new_size`, distinct from it; `old` is released once, after the copy.
    unsafe {
        let keep = usable_size(old).min(new_size);
        std::ptr::copy_nonoverlapping(old, fresh, keep);
        release(old); // wipes the old copy
    }
    fresh as *mut c_void
}
