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

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use zeroize::Zeroize;

use crate::error::{CoreError, CoreResult};

/// memsec's canary sits in the same pages as the data (memsec `CANARY_SIZE`).
const CANARY_SIZE: usize = 16;
/// Smallest allocation made when a buffer first grows: avoids many tiny page-sized steps.
const MIN_GROW_CAPACITY: usize = 256;

// ---- process-wide status ---------------------------------------------------------------------

static BYTES_LOCKED: AtomicUsize = AtomicUsize::new(0);
/// Pages of live LockedBufs that are not locked: wipe-only ones, and in a fork child every
/// one it inherited (locks are not inherited).
static BYTES_UNLOCKED: AtomicUsize = AtomicUsize::new(0);
/// Bumped in every fork child: a mapping locked under another generation is not locked here.
static GENERATION: AtomicU32 = AtomicU32::new(0);
static BUFFERS_LIVE: AtomicUsize = AtomicUsize::new(0);
/// Locked bytes (whole pages) held by the pool: part of `BYTES_LOCKED`, not in use.
static BYTES_POOLED: AtomicUsize = AtomicUsize::new(0);
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
        lock_limit_bytes: os::lock_limit(),
    }
}

/// Subtract without wrapping (counts inherited across a fork may already have been moved).
fn sub(counter: &AtomicUsize, n: usize) {
    let _ = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
        Some(v.saturating_sub(n))
    });
}

fn record_lock(ok: bool, bytes: usize) {
    LOCK_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    if ok {
        BYTES_LOCKED.fetch_add(bytes, Ordering::SeqCst);
        LAST_LOCK.store(TRI_YES, Ordering::SeqCst);
    } else {
        LOCK_FAILURES.fetch_add(1, Ordering::SeqCst);
        LAST_LOCK.store(TRI_NO, Ordering::SeqCst);
    }
}

fn record_dump_exclusion(outcome: Option<bool>) {
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

// ---- page-range helpers ------------------------------------------------------------------------

/// The whole pages covering `[addr, addr + len)`: (first page address, byte length).
fn page_span(addr: usize, len: usize) -> (usize, usize) {
    let page = os::page_size();
    let start = addr & !(page - 1);
    let end = (addr + len).div_ceil(page) * page;
    (start, end - start)
}

/// A page of a caller's buffer under `lock_pages`: how many ranges hold it, and whether it is
/// locked (it is excluded from dumps either way). `generation` is the fork generation that
/// locked it: a fork child inherits the page and this record, but not the lock.
struct SharedPage {
    holders: usize,
    locked: bool,
    generation: u32,
}

impl SharedPage {
    fn locked_now(&self) -> bool {
        self.locked && self.generation == fork_generation()
    }
}

/// The fork generation of this process: bumped in every fork child, so that whatever was locked
/// under another generation is known not to be locked here.
pub fn fork_generation() -> u32 {
    GENERATION.load(Ordering::SeqCst)
}

fn shared_pages() -> &'static Mutex<HashMap<usize, SharedPage>> {
    static PAGES: OnceLock<Mutex<HashMap<usize, SharedPage>>> = OnceLock::new();
    PAGES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Split sorted page addresses into contiguous runs: (first page, byte length).
fn page_runs(pages: &[usize], page: usize) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &p in pages {
        match runs.last_mut() {
            Some((start, len)) if *start + *len == p => *len += page,
            _ => runs.push((p, page)),
        }
    }
    runs
}

/// Exclude from dumps and lock the pages under a caller-owned range (not a LockedBuf).
///
/// Pages may be shared with other held ranges, so each page is counted per holder: excluded
/// from dumps on its first holder, released on its last (`unlock_pages`). Returns whether
/// every page of the range is locked now; when not, the range is wipe-only and one lock
/// failure is counted. Every call must be paired with one `unlock_pages` of the same range,
/// whatever it returned.
///
/// # Safety
/// `[addr, addr + len)` must be mapped memory of this process and stay so until the matching
/// `unlock_pages(addr, len)`.
pub unsafe fn lock_pages(addr: usize, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    let page = os::page_size();
    let (start, span) = page_span(addr, len);
    let mut pages = shared_pages().lock().unwrap_or_else(|p| p.into_inner());
    let mut fresh = Vec::new();
    let mut unlocked = Vec::new();
    for p in (start..start + span).step_by(page) {
        let state = pages.entry(p).or_insert(SharedPage {
            holders: 0,
            locked: false,
            generation: 0,
        });
        if state.holders == 0 {
            fresh.push(p);
        }
        state.holders += 1;
        if !state.locked_now() {
            unlocked.push(p);
        }
    }
    for (run, run_len) in page_runs(&fresh, page) {
        record_dump_exclusion(os::exclude_from_dumps(run as *mut u8, run_len));
    }
    if unlocked.is_empty() {
        return true;
    }
    let mut all_locked = true;
    let mut newly_locked = 0;
    for (run, run_len) in page_runs(&unlocked, page) {
        if os::lock(run as *mut u8, run_len) {
            for p in (run..run + run_len).step_by(page) {
                if let Some(state) = pages.get_mut(&p) {
                    if state.locked {
                        // Locked by the parent, counted as unlocked since the fork: locked again.
                        sub(&BYTES_UNLOCKED, page);
                    }
                    state.locked = true;
                    state.generation = fork_generation();
                }
            }
            newly_locked += run_len;
        } else {
            // Undo a partial lock so that the page states stay true.
            os::unlock(run as *mut u8, run_len);
            all_locked = false;
        }
    }
    BYTES_LOCKED.fetch_add(newly_locked, Ordering::SeqCst);
    record_lock(all_locked, 0);
    all_locked
}

/// Release a range held by `lock_pages`: pages whose last holder this was are unlocked and
/// may be dumped again.
///
/// # Safety
/// Same range as one earlier `lock_pages`, called once for it.
pub unsafe fn unlock_pages(addr: usize, len: usize) {
    if len == 0 {
        return;
    }
    let page = os::page_size();
    let (start, span) = page_span(addr, len);
    let mut pages = shared_pages().lock().unwrap_or_else(|p| p.into_inner());
    let mut released = Vec::new();
    let mut to_unlock = Vec::new();
    let mut inherited = 0;
    for p in (start..start + span).step_by(page) {
        if let Some(state) = pages.get_mut(&p) {
            state.holders -= 1;
            if state.holders == 0 {
                if state.locked_now() {
                    to_unlock.push(p);
                } else if state.locked {
                    // The parent's lock, which this fork child never had: counted as unlocked.
                    inherited += page;
                }
                released.push(p);
                pages.remove(&p);
            }
        }
    }
    sub(&BYTES_UNLOCKED, inherited);
    for (run, run_len) in page_runs(&to_unlock, page) {
        os::unlock(run as *mut u8, run_len);
    }
    for (run, run_len) in page_runs(&released, page) {
        os::include_in_dumps(run as *mut u8, run_len);
    }
    sub(&BYTES_LOCKED, to_unlock.len() * page);
}

/// Zero `len` bytes at `ptr` in a way the optimizer keeps.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
pub unsafe fn wipe_raw(ptr: *mut u8, len: usize) {
    if len > 0 {
        std::slice::from_raw_parts_mut(ptr, len).zeroize();
    }
}

// ---- LockedBuf ---------------------------------------------------------------------------------

/// One memsec allocation: the user pointer (just after memsec's canary) and size, and the
/// whole pages that were locked for it (canary and data, ending at the trailing guard page).
struct Mapping {
    base: NonNull<u8>,
    len: usize,
    span: usize,
    locked: bool,
    /// `GENERATION` when it was locked: a fork child's copy is not locked.
    generation: u32,
}

/// memsec's canary, copied from the first allocation (memsec keeps it private): pooled
/// mappings are checked against it on the way into the pool and out of it.
static CANARY: OnceLock<[u8; CANARY_SIZE]> = OnceLock::new();

/// Bytes of whole pages a memsec allocation of `len` bytes locks (canary included).
fn mapping_span(len: usize) -> usize {
    (len + CANARY_SIZE).div_ceil(os::page_size()) * os::page_size()
}

impl Mapping {
    /// A fresh memsec allocation of `len` bytes, locked (when the limit allows; the pool is
    /// emptied and the lock retried once when it fails) and excluded from dumps.
    fn allocate(len: usize) -> CoreResult<Mapping> {
        // SAFETY: memsec returns either None or `len` writable bytes between guard pages.
        let Some(slice) = (unsafe { memsec::malloc_sized(len) }) else {
            return Err(CoreError::Memory(format!(
                "cannot allocate a locked buffer of {len} bytes"
            )));
        };
        let base = slice.cast::<u8>();
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
        let (start, span) = page_span(base.as_ptr() as usize - CANARY_SIZE, len + CANARY_SIZE);
        // SAFETY: these pages belong to the allocation just made.
        let mut locked = unsafe { os::lock(start as *mut u8, span) };
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
    fn locked_now(&self) -> bool {
        self.locked && self.generation == fork_generation()
    }

    /// True when memsec's canary before the data is unchanged.
    fn canary_intact(&self) -> bool {
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
    fn check_canary(&self) {
        if !self.canary_intact() {
            std::process::abort();
        }
    }

    /// Zero every data byte of the mapping.
    fn wipe(&self) {
        // SAFETY: `len` bytes from `base` are the mapping's data.
        unsafe { wipe_raw(self.base.as_ptr(), self.len) };
    }

    /// Give the pages back (the caller wiped them): memsec checks the canary, unlocks and
    /// frees.
    fn free(self) {
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

/// A guarded, locked (when possible), dump-excluded buffer that is wiped when dropped.
pub struct LockedBuf {
    /// First data byte (dangling when `capacity == 0`: nothing is allocated). It sits
    /// `capacity` bytes before the mapping's trailing guard page.
    ptr: NonNull<u8>,
    capacity: usize,
    len: usize,
    /// Largest `len` before a `truncate` (which wipes what it cuts): everything ever written.
    high_water: usize,
    /// `None` when `capacity == 0`.
    mapping: Option<Mapping>,
}

// SAFETY: LockedBuf owns its allocation exclusively; `&LockedBuf` only reads it.
unsafe impl Send for LockedBuf {}
unsafe impl Sync for LockedBuf {}

impl LockedBuf {
    /// A buffer of exactly `len` bytes, all zero.
    pub fn zeroed(len: usize) -> CoreResult<LockedBuf> {
        let (mut buf, known_zero) = Self::allocate(len)?;
        if len > 0 && !known_zero {
            // SAFETY: capacity >= len; memsec filled it with garbage bytes, overwritten here.
            unsafe { std::ptr::write_bytes(buf.ptr.as_ptr(), 0, len) };
        }
        buf.len = len;
        Ok(buf)
    }

    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> CoreResult<LockedBuf> {
        Self::allocate(capacity).map(|(buf, _)| buf)
    }

    /// An empty buffer of exactly `capacity` bytes, from the pool when it has a fitting
    /// mapping; also says whether its bytes are known to be zero (pooled mappings are).
    fn allocate(capacity: usize) -> CoreResult<(LockedBuf, bool)> {
        if capacity == 0 {
            // Nothing to protect: no pages are allocated.
            BUFFERS_LIVE.fetch_add(1, Ordering::SeqCst);
            let buf = LockedBuf {
                ptr: NonNull::dangling(),
                capacity: 0,
                len: 0,
                high_water: 0,
                mapping: None,
            };
            return Ok((buf, true));
        }
        if capacity > isize::MAX as usize / 2 {
            return Err(CoreError::Memory(format!(
                "cannot allocate a locked buffer of {capacity} bytes"
            )));
        }
        let span = mapping_span(capacity);
        let (mapping, known_zero) = if pool::poolable(span) {
            match pool::take(capacity, span) {
                Some(mapping) => (mapping, true),
                None => {
                    // Fill the whole pages, so that the mapping can serve any request up to
                    // their size once it is pooled, and zero them: pooled memory is all zero.
                    let mapping = Mapping::allocate(span - CANARY_SIZE)?;
                    mapping.wipe();
                    (mapping, true)
                }
            }
        } else {
            (Mapping::allocate(capacity)?, false)
        };
        BUFFERS_LIVE.fetch_add(1, Ordering::SeqCst);
        // SAFETY: `capacity <= mapping.len`, so the data ends exactly at the guard page.
        let ptr = unsafe { mapping.base.add(mapping.len - capacity) };
        let buf = LockedBuf {
            ptr,
            capacity,
            len: 0,
            high_water: 0,
            mapping: Some(mapping),
        };
        Ok((buf, known_zero))
    }

    /// A buffer holding a copy of `data`.
    pub fn from_slice(data: &[u8]) -> CoreResult<LockedBuf> {
        let mut buf = Self::with_capacity(data.len())?;
        buf.extend_from_slice(data)?;
        Ok(buf)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// True when the buffer's pages are locked in RAM (false: wipe-only).
    pub fn is_locked(&self) -> bool {
        self.mapping.as_ref().is_none_or(Mapping::locked_now)
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len <= capacity` bytes are initialized; a dangling pointer is fine for len 0.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Address of the first data byte (for the memory probes).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Make room for `additional` more bytes, at least doubling the capacity when it grows.
    pub fn reserve(&mut self, additional: usize) -> CoreResult<()> {
        let needed = self.needed(additional)?;
        if needed <= self.capacity {
            return Ok(());
        }
        let target = needed
            .max(self.capacity.saturating_mul(2))
            .max(MIN_GROW_CAPACITY);
        self.grow_to(target)
    }

    /// Make room for exactly `additional` more bytes (no amortized slack).
    pub fn reserve_exact(&mut self, additional: usize) -> CoreResult<()> {
        let needed = self.needed(additional)?;
        if needed <= self.capacity {
            return Ok(());
        }
        self.grow_to(needed)
    }

    /// Append `data`, growing when needed.
    #[inline]
    pub fn extend_from_slice(&mut self, data: &[u8]) -> CoreResult<()> {
        if data.len() > self.capacity - self.len {
            self.reserve(data.len())?;
        }
        // SAFETY: reserve guaranteed `len + data.len() <= capacity`; `data` cannot alias our
        // buffer mutably because we hold `&mut self`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                data.len(),
            );
        }
        self.len += data.len();
        Ok(())
    }

    /// Shorten to `len` bytes, wiping the dropped tail. No effect when `len >= self.len()`.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.high_water = self.high_water.max(self.len);
            // SAFETY: `[len, self.len)` is inside the initialized part.
            unsafe { wipe_raw(self.ptr.as_ptr().add(len), self.len - len) };
            self.len = len;
        }
    }

    /// Wipe the whole content and set the length to 0 (capacity is kept).
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    fn needed(&self, additional: usize) -> CoreResult<usize> {
        self.len
            .checked_add(additional)
            .ok_or_else(|| CoreError::Memory("locked buffer size overflow".into()))
    }

    #[cold]
    fn grow_to(&mut self, capacity: usize) -> CoreResult<()> {
        let mut bigger = LockedBuf::with_capacity(capacity)?;
        if self.len > 0 {
            // SAFETY: `bigger` has room for `self.len` bytes; distinct allocations.
            unsafe {
                std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), bigger.ptr.as_ptr(), self.len);
            }
        }
        bigger.len = self.len;
        // The old buffer is wiped (and pooled or freed) when `bigger` (now holding it) drops.
        std::mem::swap(self, &mut bigger);
        Ok(())
    }
}

impl Drop for LockedBuf {
    fn drop(&mut self) {
        BUFFERS_LIVE.fetch_sub(1, Ordering::SeqCst);
        let Some(mapping) = self.mapping.take() else {
            return;
        };
        let mapping = if mapping.locked_now() && pool::poolable(mapping.span) {
            // Kept for reuse: wipe everything this buffer ever wrote (the mapping before `ptr`
            // is zero already). A mapping that is freed instead is wiped whole below, once.
            // SAFETY: `[ptr, ptr + max(len, high_water))` is inside the buffer's capacity.
            unsafe { wipe_raw(self.ptr.as_ptr(), self.len.max(self.high_water)) };
            mapping.check_canary();
            match pool::put(mapping) {
                Ok(()) => return,
                Err(mapping) => mapping,
            }
        } else {
            mapping
        };
        // Leaving our hands: wipe all of it, not only what this buffer wrote.
        mapping.wipe();
        mapping.free();
    }
}

// ---- reuse pool ----------------------------------------------------------------------------------

/// Wiped, still locked mappings kept for reuse.
///
/// Bounds: mappings of `MIN_SPAN` (4 KiB) up to `MAX_SPAN` (16 MiB) of locked pages are
/// pooled, at most `PER_CLASS` per power-of-two size class, and at most `limit()` bytes in
/// all: 12 MiB, or half of RLIMIT_MEMLOCK when that is lower (4 MiB under the usual 8 MiB),
/// so that buffers in use always keep the other half. Only locked mappings are pooled, and
/// what is counted is their locked pages. An allocation whose lock fails empties the pool and
/// tries again.
///
/// A request takes the smallest pooled mapping that holds it and is at most twice its size
/// (so a reused mapping never locks more than double what a fresh one would).
///
/// Like aws-lc's heap (`lc_heap`), the pool sits behind a spin lock that `fork` holds across
/// the fork: a child never inherits it held or half-updated. The child's copies of the pooled
/// pages are not locked (mlock is not inherited), so the child drops them on its first use of
/// the pool.
mod pool {
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Once;

    use super::{Mapping, BYTES_POOLED};

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
        install_fork_handlers();
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

    /// `fork` prepare handler: hold the pool so no thread is halfway through an update.
    #[cfg(unix)]
    extern "C" fn before_fork() {
        acquire();
    }

    #[cfg(unix)]
    extern "C" fn after_fork_parent() {
        release();
    }

    #[cfg(unix)]
    extern "C" fn after_fork_child() {
        // Nothing the child inherited is locked: every live buffer (and the pool, dropped on
        // its first use) counts as unlocked from now on.
        super::GENERATION.fetch_add(1, Ordering::SeqCst);
        let inherited = super::BYTES_LOCKED.swap(0, Ordering::SeqCst);
        super::BYTES_UNLOCKED.fetch_add(inherited, Ordering::SeqCst);
        // SAFETY: the prepare handler holds the lock for this (now the only) thread.
        unsafe { (*POOL.pool.get()).inherited = true };
        release();
    }

    /// Register the fork handlers (once). Module init calls this before `lc_heap::install`, so
    /// that `fork` runs this prepare handler after lc_heap's: a thread inside aws-lc may still
    /// drop a buffer into the pool while lc_heap waits for it to leave.
    pub fn install_fork_handlers() {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            #[cfg(unix)]
            // SAFETY: plain functions without captured state, valid for the process lifetime.
            unsafe {
                libc::pthread_atfork(
                    Some(before_fork),
                    Some(after_fork_parent),
                    Some(after_fork_child),
                );
            }
        });
    }

    /// The size class of a span: 0 for 4 KiB up to (not including) 8 KiB, and so on.
    pub fn class(span: usize) -> Option<usize> {
        poolable(span).then(|| (span.ilog2() - MIN_SPAN.ilog2()) as usize)
    }

    pub fn poolable(span: usize) -> bool {
        (MIN_SPAN..=MAX_SPAN).contains(&span)
    }

    /// Most bytes the pool keeps: `MAX_BYTES`, or half of RLIMIT_MEMLOCK when lower.
    pub fn limit() -> usize {
        match super::os::lock_limit() {
            Some(lock_limit) => MAX_BYTES.min(usize::try_from(lock_limit / 2).unwrap_or(MAX_BYTES)),
            None => MAX_BYTES,
        }
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
    /// pass its limit.
    pub fn put(mapping: Mapping) -> Result<(), Mapping> {
        let Some(class) = class(mapping.span) else {
            return Err(mapping);
        };
        let limit = limit();
        with_pool(|pool| {
            if pool.bytes + mapping.span > limit {
                return Err(mapping);
            }
            let slots = &mut pool.slots[class * PER_CLASS..(class + 1) * PER_CLASS];
            let Some(free) = slots.iter_mut().find(|s| s.is_none()) else {
                return Err(mapping);
            };
            pool.bytes += mapping.span;
            BYTES_POOLED.fetch_add(mapping.span, Ordering::SeqCst);
            *free = Some(mapping);
            Ok(())
        })
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
}

/// Free the wiped buffers the reuse pool holds (their pages are unlocked and unmapped);
/// returns the bytes released. The pool refills as buffers are dropped.
pub fn release_pool() -> usize {
    pool::release_all()
}

/// Register the pool's `fork` handlers: call before `lc_heap::install` (see `pool`).
pub fn install_fork_handlers() {
    pool::install_fork_handlers();
}

impl Deref for LockedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl DerefMut for LockedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl std::io::Write for LockedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(data)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::OutOfMemory, e.to_string()))?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for LockedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedBuf")
            .field("len", &self.len)
            .field("locked", &self.is_locked())
            .finish_non_exhaustive()
    }
}

// ---- platform calls ----------------------------------------------------------------------------

#[cfg(unix)]
mod os {
    use std::sync::OnceLock;

    #[cfg(target_os = "linux")]
    pub const PLATFORM: &str = "linux";
    #[cfg(target_os = "macos")]
    pub const PLATFORM: &str = "darwin";
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    pub const PLATFORM: &str = std::env::consts::OS;
    pub const GUARD_PAGES: bool = true;

    pub fn page_size() -> usize {
        static PAGE: OnceLock<usize> = OnceLock::new();
        // SAFETY: sysconf has no preconditions.
        *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => 4096,
        })
    }

    /// # Safety
    /// Page-aligned range of this process's memory.
    pub unsafe fn lock(addr: *mut u8, len: usize) -> bool {
        libc::mlock(addr.cast(), len) == 0
    }

    /// # Safety
    /// Page-aligned range of this process's memory.
    pub unsafe fn unlock(addr: *mut u8, len: usize) {
        libc::munlock(addr.cast(), len);
    }

    /// `Some(applied)` where the platform can exclude pages from core dumps, else `None`.
    ///
    /// # Safety
    /// Page-aligned range of this process's memory.
    pub unsafe fn exclude_from_dumps(addr: *mut u8, len: usize) -> Option<bool> {
        #[cfg(target_os = "linux")]
        {
            Some(libc::madvise(addr.cast(), len, libc::MADV_DONTDUMP) == 0)
        }
        #[cfg(any(target_os = "freebsd", target_os = "dragonfly"))]
        {
            Some(libc::madvise(addr.cast(), len, libc::MADV_NOCORE) == 0)
        }
        #[cfg(not(any(target_os = "linux", target_os = "freebsd", target_os = "dragonfly")))]
        {
            let _ = (addr, len);
            None
        }
    }

    /// # Safety
    /// Page-aligned range of this process's memory.
    pub unsafe fn include_in_dumps(addr: *mut u8, len: usize) {
        #[cfg(target_os = "linux")]
        libc::madvise(addr.cast(), len, libc::MADV_DODUMP);
        #[cfg(any(target_os = "freebsd", target_os = "dragonfly"))]
        libc::madvise(addr.cast(), len, libc::MADV_CORE);
        let _ = (addr, len);
    }

    pub fn lock_limit() -> Option<u64> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid out-pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0
            || lim.rlim_cur == libc::RLIM_INFINITY
        {
            return None;
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
        Some(lim.rlim_cur as u64)
    }
}

#[cfg(windows)]
mod os {
    use std::sync::OnceLock;
    use windows_sys::Win32::System::Memory::VirtualUnlock;
    use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};

    pub const PLATFORM: &str = "windows";
    pub const GUARD_PAGES: bool = true;

    pub fn page_size() -> usize {
        static PAGE: OnceLock<usize> = OnceLock::new();
        *PAGE.get_or_init(|| {
            let mut info = std::mem::MaybeUninit::<SYSTEM_INFO>::zeroed();
            // SAFETY: GetSystemInfo fills the struct it is given.
            unsafe {
                GetSystemInfo(info.as_mut_ptr());
                info.assume_init().dwPageSize as usize
            }
        })
    }

    /// Within the working set, raised when its quota refuses (see win.rs).
    ///
    /// # Safety
    /// Range of this process's committed memory.
    pub unsafe fn lock(addr: *mut u8, len: usize) -> bool {
        crate::win::lock(addr, len)
    }

    /// # Safety
    /// Range of this process's committed memory.
    pub unsafe fn unlock(addr: *mut u8, len: usize) {
        VirtualUnlock(addr.cast(), len);
    }

    /// Windows has no per-page dump exclusion.
    pub unsafe fn exclude_from_dumps(_addr: *mut u8, _len: usize) -> Option<bool> {
        None
    }

    pub unsafe fn include_in_dumps(_addr: *mut u8, _len: usize) {}

    /// The working-set quota, not an RLIMIT, bounds VirtualLock on Windows.
    pub fn lock_limit() -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn zeroed_is_all_zero_and_exact_length() {
        for len in [1usize, 15, 16, 17, 4095, 4096, 4097, 100_000] {
            let buf = LockedBuf::zeroed(len).unwrap();
            assert_eq!(buf.len(), len);
            assert!(buf.iter().all(|&b| b == 0), "len {len}");
        }
    }

    #[test]
    fn zero_length_buffers_work() {
        let mut a = LockedBuf::zeroed(0).unwrap();
        assert!(a.is_empty());
        assert_eq!(a.as_slice(), b"");
        a.truncate(0);
        a.extend_from_slice(b"").unwrap();
        assert!(a.is_empty());
        a.extend_from_slice(b"abc").unwrap();
        assert_eq!(a.as_slice(), b"abc");
        let b = LockedBuf::from_slice(b"").unwrap();
        assert_eq!(b.len(), 0);
        let c = LockedBuf::with_capacity(0).unwrap();
        assert_eq!(c.capacity(), 0);
    }

    #[test]
    fn growth_keeps_content() {
        let mut buf = LockedBuf::with_capacity(4).unwrap();
        let mut expect = Vec::new();
        for i in 0..5000u32 {
            let chunk = i.to_le_bytes();
            buf.extend_from_slice(&chunk).unwrap();
            expect.extend_from_slice(&chunk);
        }
        assert_eq!(buf.as_slice(), &expect[..]);
        assert!(buf.capacity() >= expect.len());
    }

    #[test]
    fn write_trait_appends() {
        let mut buf = LockedBuf::with_capacity(2).unwrap();
        let n = 12;
        write!(buf, "{n}-{}", 3.5).unwrap();
        buf.write_all(b"!").unwrap();
        assert_eq!(buf.as_slice(), b"12-3.5!");
    }

    #[test]
    fn truncate_wipes_the_tail() {
        let mut buf = LockedBuf::from_slice(&[0xAA; 64]).unwrap();
        buf.truncate(10);
        assert_eq!(buf.len(), 10);
        assert_eq!(buf.as_slice(), &[0xAA; 10]);
        // The bytes past the new length are zero inside the allocation.
        let tail = unsafe { std::slice::from_raw_parts(buf.as_ptr().add(10), 54) };
        assert!(tail.iter().all(|&b| b == 0));
        buf.truncate(100); // longer than len: no effect
        assert_eq!(buf.len(), 10);
    }

    #[test]
    fn reserve_exact_and_mutation() {
        let mut buf = LockedBuf::zeroed(3).unwrap();
        buf.as_mut_slice().copy_from_slice(b"xyz");
        buf[0] = b'X';
        buf.reserve_exact(10).unwrap();
        assert_eq!(buf.capacity(), 13);
        assert_eq!(&buf[..], b"Xyz");
        buf.clear();
        assert!(buf.is_empty());
    }

    #[test]
    fn debug_never_prints_content() {
        let buf = LockedBuf::from_slice(b"secret-bytes-here").unwrap();
        let text = format!("{buf:?}");
        assert!(text.contains("len: 17"));
        assert!(!text.contains("secret"));
        assert!(!text.contains("115")); // 's' as a decimal byte
    }

    #[test]
    fn counters_track_live_buffers() {
        // Other tests run in parallel threads, so only check what this test itself holds.
        let bufs: Vec<LockedBuf> = (0..4).map(|_| LockedBuf::zeroed(100).unwrap()).collect();
        let status = memory_status();
        assert!(status.buffers_live >= 4);
        assert!(status.lock_attempts >= 4);
        if bufs.iter().all(|b| b.is_locked()) {
            assert!(status.bytes_locked >= 4 * os::page_size());
        }
        drop(bufs);
    }

    #[test]
    fn pool_size_classes() {
        let page = os::page_size();
        let k = 1024;
        assert_eq!(pool::class(0), None);
        assert_eq!(pool::class(4 * k - 1), None);
        assert_eq!(pool::class(4 * k), Some(0));
        assert_eq!(pool::class(8 * k - 1), Some(0));
        assert_eq!(pool::class(8 * k), Some(1));
        assert_eq!(pool::class(64 * k), Some(4));
        assert_eq!(pool::class(128 * k - page), Some(4));
        assert_eq!(pool::class(1024 * k + page), Some(8));
        assert_eq!(pool::class(16 * 1024 * k), Some(12));
        assert_eq!(pool::class(16 * 1024 * k + page), None);
        // A mapping's span: its data and memsec's canary, in whole pages.
        assert_eq!(mapping_span(64 * k - CANARY_SIZE), 64 * k);
        assert_eq!(mapping_span(64 * k - CANARY_SIZE + 1), 64 * k + page);
        assert!(pool::limit() <= pool::MAX_BYTES);
        if let Some(lock_limit) = os::lock_limit() {
            assert!(pool::limit() as u64 <= lock_limit / 2);
        }
    }

    #[test]
    fn pooled_buffers_are_reused_zeroed_and_guarded() {
        // An odd size no other test asks for, so that the mapping is normally ours to reuse.
        let size = 700_001;
        let pattern = random_bytes(size);
        let buf = LockedBuf::from_slice(&pattern).unwrap();
        let first = buf.as_ptr() as usize;
        let locked = buf.is_locked();
        drop(buf);
        let again = LockedBuf::with_capacity(size).unwrap();
        assert_eq!(again.capacity(), size);
        // Whatever mapping it is, every byte of it is zero, data and slack before it.
        let mapping = again.mapping.as_ref().unwrap();
        let whole = unsafe { std::slice::from_raw_parts(mapping.base.as_ptr(), mapping.len) };
        assert!(whole.iter().all(|&b| b == 0));
        // The data still ends at the trailing guard page.
        assert_eq!(
            again.as_ptr() as usize + size,
            mapping.base.as_ptr() as usize + mapping.len
        );
        assert!(mapping.canary_intact());
        if locked && again.as_ptr() as usize == first {
            assert!(again.is_locked());
        }
        let zeroed = LockedBuf::zeroed(size).unwrap();
        assert!(zeroed.iter().all(|&b| b == 0));
    }

    #[test]
    fn pool_stays_within_its_bounds_and_wiped() {
        let spans = [70_000usize, 70_000, 70_000, 300_000, 1_500_000, 3_000_000];
        let bufs: Vec<LockedBuf> = spans
            .iter()
            .map(|&n| LockedBuf::from_slice(&vec![0x5A; n]).unwrap())
            .collect();
        drop(bufs);
        let (bytes, zero) = pool::audit();
        assert!(bytes <= pool::limit(), "{bytes} > {}", pool::limit());
        assert!(zero, "a pooled mapping holds non-zero bytes");
    }

    #[test]
    fn pool_never_hands_one_mapping_to_two_threads() {
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..150usize {
                        let size = [100, 5_000, 70_000, 300_000][(i + t as usize) % 4];
                        let fill = t.wrapping_mul(31).wrapping_add(i as u8) | 1;
                        let mut held = LockedBuf::zeroed(size).unwrap();
                        assert!(held.iter().all(|&b| b == 0), "reused buffer not zero");
                        held.as_mut_slice().fill(fill);
                        std::thread::yield_now();
                        assert!(
                            held.iter().all(|&b| b == fill),
                            "buffer shared with a thread"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (bytes, zero) = pool::audit();
        assert!(bytes <= pool::limit());
        assert!(zero);
    }

    #[test]
    fn canary_check_sees_a_write_before_the_data() {
        let buf = LockedBuf::zeroed(70_000).unwrap();
        let mapping = buf.mapping.as_ref().unwrap();
        assert!(mapping.canary_intact());
        let canary = unsafe { mapping.base.as_ptr().sub(1) };
        unsafe { canary.write_volatile(canary.read_volatile() ^ 0x01) };
        assert!(!mapping.canary_intact());
        unsafe { canary.write_volatile(canary.read_volatile() ^ 0x01) };
        assert!(mapping.canary_intact());
    }

    #[test]
    fn page_span_covers_whole_pages() {
        let page = os::page_size();
        assert_eq!(page_span(page * 3 + 5, 1), (page * 3, page));
        assert_eq!(page_span(page * 3 + 5, page), (page * 3, 2 * page));
        assert_eq!(page_span(page * 3, page), (page * 3, page));
    }

    #[test]
    fn lock_pages_is_reference_counted() {
        let mut data = vec![7u8; 3 * os::page_size()];
        let addr = data.as_mut_ptr() as usize;
        let first_page = page_span(addr, 1).0;
        let holders = |p: usize| shared_pages().lock().unwrap().get(&p).map(|s| s.holders);
        unsafe {
            let locked = lock_pages(addr, 10);
            assert_eq!(lock_pages(addr + 5, 10), locked);
            assert_eq!(holders(first_page), Some(2));
            unlock_pages(addr, 10);
            // Still held by the second holder.
            assert_eq!(holders(first_page), Some(1));
            unlock_pages(addr + 5, 10);
            assert_eq!(holders(first_page), None);
            wipe_raw(data.as_mut_ptr(), data.len());
        }
        assert!(data.iter().all(|&b| b == 0));
    }

    #[test]
    fn page_runs_group_contiguous_pages() {
        let page = 4096;
        let pages = [page, 2 * page, 3 * page, 7 * page, 9 * page, 10 * page];
        assert_eq!(
            page_runs(&pages, page),
            vec![(page, 3 * page), (7 * page, page), (9 * page, 2 * page)]
        );
        assert!(page_runs(&[], page).is_empty());
    }

    /// Read this process's memory through the kernel (a file read, so reading freed memory is
    /// not undefined behaviour); `None` when the range is unmapped.
    #[cfg(target_os = "linux")]
    fn read_own_memory(addr: usize, len: usize) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mem = std::fs::File::open("/proc/self/mem").ok()?;
        let mut out = vec![0u8; len];
        mem.read_exact_at(&mut out, addr as u64).ok()?;
        Some(out)
    }

    /// Chunks of `pattern` found at their own offsets in `memory` (other tests running in
    /// parallel may reuse freed memory, but they cannot reproduce the random pattern).
    #[cfg(target_os = "linux")]
    fn surviving_chunks(memory: &[u8], pattern: &[u8]) -> usize {
        memory
            .chunks(32)
            .zip(pattern.chunks(32))
            .filter(|(m, p)| m == p)
            .count()
    }

    fn random_bytes(len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        aws_lc_rs::rand::fill(&mut bytes).unwrap();
        bytes
    }

    #[cfg(target_os = "linux")]
    fn random_pattern(len: usize) -> Vec<u8> {
        let mut pattern = vec![0u8; len];
        aws_lc_rs::rand::fill(&mut pattern).unwrap();
        pattern
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn dropped_buffer_is_wiped() {
        let pattern = random_pattern(3 * os::page_size());
        let buf = LockedBuf::from_slice(&pattern).unwrap();
        let addr = buf.as_ptr() as usize;
        assert_eq!(read_own_memory(addr, pattern.len()).unwrap(), pattern);
        drop(buf);
        if let Some(after) = read_own_memory(addr, pattern.len()) {
            assert_eq!(surviving_chunks(&after, &pattern), 0);
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn pooled_buffer_is_wiped_in_place() {
        let pattern = random_pattern(200_003);
        let buf = LockedBuf::from_slice(&pattern).unwrap();
        let addr = buf.as_ptr() as usize;
        drop(buf);
        // Pooled: still mapped, and zero; freed: unmapped or wiped before the free.
        if let Some(after) = read_own_memory(addr, pattern.len()) {
            assert_eq!(surviving_chunks(&after, &pattern), 0);
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn buffer_is_wiped_when_a_panic_unwinds() {
        let pattern = random_pattern(3 * os::page_size());
        let buf = LockedBuf::from_slice(&pattern).unwrap();
        let addr = buf.as_ptr() as usize;
        let result = std::panic::catch_unwind(move || {
            let _owned = buf;
            panic!("unwinding through a LockedBuf");
        });
        assert!(result.is_err());
        if let Some(after) = read_own_memory(addr, pattern.len()) {
            assert_eq!(surviving_chunks(&after, &pattern), 0);
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn growth_wipes_the_old_buffer() {
        let pattern = random_pattern(2 * os::page_size());
        let mut buf = LockedBuf::from_slice(&pattern).unwrap();
        let old_addr = buf.as_ptr() as usize;
        buf.extend_from_slice(&[1; 64]).unwrap();
        assert_ne!(buf.as_ptr() as usize, old_addr);
        assert_eq!(&buf[..pattern.len()], &pattern[..]);
        if let Some(after) = read_own_memory(old_addr, pattern.len()) {
            assert_eq!(surviving_chunks(&after, &pattern), 0);
        }
    }
}
