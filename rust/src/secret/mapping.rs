//! One memsec allocation (guard pages, canary, data flush against the trailing guard page):
//! locked and dump-excluded when made, checked and wiped before it is freed.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use super::pages::page_span;
use super::status::{fork_generation, record_dump_exclusion, record_lock, sub};
use super::status::{BYTES_LOCKED, BYTES_UNLOCKED};
use super::{os, pool, wipe_raw};
use crate::error::{CoreError, CoreResult};

/// memsec's canary sits in the same pages as the data (memsec `CANARY_SIZE`).
pub(super) const CANARY_SIZE: usize = 16;

/// One memsec allocation: the user pointer (just after memsec's canary) and size, and the
/// whole pages that were locked for it (canary and data, ending at the trailing guard page).
pub(super) struct Mapping {
    pub(super) base: NonNull<u8>,
    pub(super) len: usize,
    pub(super) span: usize,
    pub(super) locked: bool,
    /// `GENERATION` when it was locked: a fork child's copy is not locked.
    pub(super) generation: u32,
}

/// memsec's canary, copied from the first allocation (memsec keeps it private): pooled
/// mappings are checked against it on the way into the pool and out of it.
static CANARY: OnceLock<[u8; CANARY_SIZE]> = OnceLock::new();

/// Bytes of whole pages a memsec allocation of `len` bytes locks (canary included).
pub(super) fn mapping_span(len: usize) -> usize {
    (len + CANARY_SIZE).div_ceil(os::page_size()) * os::page_size()
}

/// Copy memsec's canary from the allocation at `base` (once per process).
fn remember_canary(base: NonNull<u8>) {
    CANARY.get_or_init(|| {
        let mut canary = [0u8; CANARY_SIZE];
        // SAFETY: memsec wrote its canary in the CANARY_SIZE bytes before the user pointer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                base.as_ptr().sub(CANARY_SIZE),
                canary.as_mut_ptr(),
                CANARY_SIZE,
            )
        };
        canary
    });
}

/// Run memsec's one-time setup (its page size and random canary, behind a `Once`) and fill
/// `CANARY`, with one throw-away allocation that touches no counter and no pool.
///
/// Why: both are one-time initialisations behind a lock-like state. A `fork` from another
/// thread while the first allocation is inside either leaves the child with that state
/// "running" and no thread to finish it, so the child's first allocation waits forever.
/// Module initialisation calls this under the GIL, before Python code can start a thread
/// that allocates, so no fork can land inside it afterwards.
pub(super) fn initialise() {
    if CANARY.get().is_some() {
        return;
    }
    // SAFETY: memsec returns either None or one writable byte between guard pages.
    if let Some(slice) = unsafe { memsec::malloc_sized(1) } {
        remember_canary(slice.cast::<u8>());
        // SAFETY: allocated by memsec::malloc_sized just above and freed once; nothing was
        // written to it.
        unsafe { memsec::free(slice) };
    }
}

/// True once memsec's setup ran and `CANARY` holds its canary.
pub(super) fn initialised() -> bool {
    CANARY.get().is_some()
}

impl Mapping {
    /// A fresh memsec allocation of `len` bytes, locked (when the limit allows; the pool is
    /// emptied and the lock retried once when it fails) and excluded from dumps.
    pub(super) fn allocate(len: usize) -> CoreResult<Mapping> {
        // SAFETY: memsec returns either None or `len` writable bytes between guard pages.
        let Some(slice) = (unsafe { memsec::malloc_sized(len) }) else {
            return Err(CoreError::Memory(format!(
                "cannot allocate a locked buffer of {len} bytes"
            )));
        };
        let base = slice.cast::<u8>();
        remember_canary(base);
        let (start, span) = page_span(base.as_ptr() as usize - CANARY_SIZE, len + CANARY_SIZE);
        // SAFETY: these pages belong to the allocation just made.
        let mut locked = unsafe { os::lock(start as *mut u8, span) };
        if !locked {
            // The limit may have been lowered since the pool last read it.
            pool::read_lock_limit();
        }
        if !locked && pool::release_all() > 0 {
            // Pooled buffers may be what stands between this one and RLIMIT_MEMLOCK.
            // SAFETY: as above.
            locked = unsafe { os::lock(start as *mut u8, span) };
        }
        record_lock(locked, span);
        if !locked {
            BYTES_UNLOCKED.fetch_add(span, Ordering::SeqCst);
        }
        // Wipe-only buffers are still kept out of core dumps.
        // SAFETY: as above.
        record_dump_exclusion(unsafe { os::exclude_from_dumps(start as *mut u8, span) });
        Ok(Mapping {
            base,
            len,
            span,
            locked,
            generation: fork_generation(),
        })
    }

    /// Locked in this process (a fork child inherits the pages, not the lock).
    pub(super) fn locked_now(&self) -> bool {
        self.locked && self.generation == fork_generation()
    }

    /// True when memsec's canary before the data is unchanged.
    pub(super) fn canary_intact(&self) -> bool {
        let Some(expected) = CANARY.get() else {
            return false;
        };
        // SAFETY: the canary bytes precede `base` inside the mapping's unprotected pages.
        let actual =
            unsafe { std::slice::from_raw_parts(self.base.as_ptr().sub(CANARY_SIZE), CANARY_SIZE) };
        actual == expected
    }

    /// Abort like memsec does when something wrote before the start of the buffer: the
    /// process's memory can no longer be trusted.
    pub(super) fn check_canary(&self) {
        if !self.canary_intact() {
            std::process::abort();
        }
    }

    /// Zero every data byte of the mapping.
    pub(super) fn wipe(&self) {
        // SAFETY: `len` bytes from `base` are the mapping's data.
        unsafe { wipe_raw(self.base.as_ptr(), self.len) };
    }

    /// Give the pages back (the caller wiped them): memsec checks the canary, unlocks and
    /// frees.
    pub(super) fn free(self) {
        if self.locked_now() {
            sub(&BYTES_LOCKED, self.span);
        } else {
            sub(&BYTES_UNLOCKED, self.span);
        }
        // SAFETY: allocated by memsec::malloc_sized and freed once (`self` is consumed).
        unsafe {
            memsec::free(NonNull::new_unchecked(std::ptr::slice_from_raw_parts_mut(
                self.base.as_ptr(),
                self.len,
            )))
        };
    }
}
