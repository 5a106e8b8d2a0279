//! `LockedBuf`: the one place every secret lives.
//!
//! Each buffer is a `memsec` guarded allocation: a no-access guard page on both sides, a random
//! canary just before the data (checked on free, the process aborts if it was overwritten), and
//! the data placed flush against the trailing guard page so that the first byte written past
//! the end faults. memsec's `malloc` also calls `madvise(MADV_DONTDUMP)` and `mlock` on the
//! data pages but ignores both results, so we repeat both calls on the same pages and record
//! what really happened: re-locking already locked pages succeeds without charging
//! RLIMIT_MEMLOCK twice, and a failed lock fails again. When locking fails the buffer still
//! works (wipe-only) and the failure is counted. Drop wipes with `zeroize`, then memsec's `free`
//! zeroes the whole page range again, restores dumping, unlocks and frees.
//!
//! The same page helpers lock a caller's Python buffer (`BufferLock`): those pages are shared
//! with other heap objects, so their locks are reference-counted per page.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use zeroize::Zeroize;

use crate::error::{CoreError, CoreResult};

/// memsec's canary sits in the same pages as the data (memsec `CANARY_SIZE`).
const CANARY_SIZE: usize = 16;
/// Smallest allocation made when a buffer first grows: avoids many tiny page-sized steps.
const MIN_GROW_CAPACITY: usize = 256;

// ---- process-wide status ---------------------------------------------------------------------

static BYTES_LOCKED: AtomicUsize = AtomicUsize::new(0);
static BUFFERS_LIVE: AtomicUsize = AtomicUsize::new(0);
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
    /// Bytes (whole pages) the core holds locked right now.
    pub bytes_locked: usize,
    pub buffers_live: usize,
    pub lock_failures: u64,
    pub lock_attempts: u64,
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
    MemoryStatus {
        mlock_works: LAST_LOCK.load(Ordering::SeqCst) == TRI_YES,
        platform: os::PLATFORM,
        bytes_locked: BYTES_LOCKED.load(Ordering::SeqCst),
        buffers_live: BUFFERS_LIVE.load(Ordering::SeqCst),
        lock_failures: LOCK_FAILURES.load(Ordering::SeqCst),
        lock_attempts: LOCK_ATTEMPTS.load(Ordering::SeqCst),
        dump_exclusion: DUMP_EXCLUSION.load(Ordering::SeqCst) == TRI_YES,
        guard_pages: os::GUARD_PAGES,
        lock_limit_bytes: os::lock_limit(),
    }
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
/// locked (it is excluded from dumps either way).
struct SharedPage {
    holders: usize,
    locked: bool,
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
        });
        if state.holders == 0 {
            fresh.push(p);
        }
        state.holders += 1;
        if !state.locked {
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
                    state.locked = true;
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
    for p in (start..start + span).step_by(page) {
        if let Some(state) = pages.get_mut(&p) {
            state.holders -= 1;
            if state.holders == 0 {
                if state.locked {
                    to_unlock.push(p);
                }
                released.push(p);
                pages.remove(&p);
            }
        }
    }
    for (run, run_len) in page_runs(&to_unlock, page) {
        os::unlock(run as *mut u8, run_len);
    }
    for (run, run_len) in page_runs(&released, page) {
        os::include_in_dumps(run as *mut u8, run_len);
    }
    BYTES_LOCKED.fetch_sub(to_unlock.len() * page, Ordering::SeqCst);
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

/// A guarded, locked (when possible), dump-excluded buffer that is wiped when dropped.
pub struct LockedBuf {
    /// memsec user pointer (dangling when `capacity == 0`: nothing is allocated).
    ptr: NonNull<u8>,
    capacity: usize,
    len: usize,
    locked: bool,
    /// Bytes (whole pages) this buffer added to `BYTES_LOCKED`.
    locked_bytes: usize,
}

// SAFETY: LockedBuf owns its allocation exclusively; `&LockedBuf` only reads it.
unsafe impl Send for LockedBuf {}
unsafe impl Sync for LockedBuf {}

impl LockedBuf {
    /// A buffer of exactly `len` bytes, all zero.
    pub fn zeroed(len: usize) -> CoreResult<LockedBuf> {
        let mut buf = Self::with_capacity(len)?;
        if len > 0 {
            // SAFETY: capacity >= len; memsec filled it with garbage bytes, overwritten here.
            unsafe { std::ptr::write_bytes(buf.ptr.as_ptr(), 0, len) };
        }
        buf.len = len;
        Ok(buf)
    }

    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> CoreResult<LockedBuf> {
        BUFFERS_LIVE.fetch_add(1, Ordering::SeqCst);
        if capacity == 0 {
            // Nothing to protect: no pages are allocated.
            return Ok(LockedBuf {
                ptr: NonNull::dangling(),
                capacity: 0,
                len: 0,
                locked: true,
                locked_bytes: 0,
            });
        }
        if capacity > isize::MAX as usize / 2 {
            BUFFERS_LIVE.fetch_sub(1, Ordering::SeqCst);
            return Err(CoreError::Memory(format!(
                "cannot allocate a locked buffer of {capacity} bytes"
            )));
        }
        // SAFETY: memsec returns either None or `capacity` writable bytes between guard pages.
        let Some(slice) = (unsafe { memsec::malloc_sized(capacity) }) else {
            BUFFERS_LIVE.fetch_sub(1, Ordering::SeqCst);
            return Err(CoreError::Memory(format!(
                "cannot allocate a locked buffer of {capacity} bytes"
            )));
        };
        let ptr = slice.cast::<u8>();
        // The pages memsec tried to lock: canary and data, ending at the trailing guard page.
        let (start, span) = page_span(ptr.as_ptr() as usize - CANARY_SIZE, capacity + CANARY_SIZE);
        // SAFETY: these pages belong to the allocation just made.
        let locked = unsafe { os::lock(start as *mut u8, span) };
        record_lock(locked, span);
        // Wipe-only buffers are still kept out of core dumps (memsec's `free` re-enables dumping).
        // SAFETY: as above.
        record_dump_exclusion(unsafe { os::exclude_from_dumps(start as *mut u8, span) });
        Ok(LockedBuf {
            ptr,
            capacity,
            len: 0,
            locked,
            locked_bytes: if locked { span } else { 0 },
        })
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
        self.locked
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

    /// Append `data`; growing moves the content to a new locked buffer and wipes the old one.
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
        // The old buffer is wiped and freed when `bigger` (now holding it) drops.
        std::mem::swap(self, &mut bigger);
        Ok(())
    }
}

impl Drop for LockedBuf {
    fn drop(&mut self) {
        BUFFERS_LIVE.fetch_sub(1, Ordering::SeqCst);
        if self.capacity == 0 {
            return;
        }
        // SAFETY: the whole capacity is ours; wipe all of it, not only `len`.
        unsafe { wipe_raw(self.ptr.as_ptr(), self.capacity) };
        BYTES_LOCKED.fetch_sub(self.locked_bytes, Ordering::SeqCst);
        // SAFETY: allocated by memsec::malloc_sized and freed once; memsec zeroes the pages
        // again, restores dumping, unlocks and checks the canary.
        unsafe {
            memsec::free(NonNull::new_unchecked(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.capacity,
            )))
        };
    }
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
            .field("locked", &self.locked)
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
    use windows_sys::Win32::System::Memory::{VirtualLock, VirtualUnlock};
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

    /// # Safety
    /// Range of this process's committed memory.
    pub unsafe fn lock(addr: *mut u8, len: usize) -> bool {
        VirtualLock(addr.cast(), len) != 0
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
