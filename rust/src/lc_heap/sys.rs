//! The calls the heap needs from the platform: anonymous dump-excluded mappings and locking
//! (Unix here, Windows in `windows.rs`, `malloc` and no locks elsewhere).

#[cfg(windows)]
pub use super::windows::*;
#[cfg(not(any(unix, windows)))]
pub use other::*;
#[cfg(unix)]
pub use unix::*;

#[cfg(unix)]
mod unix {
    /// Big blocks get their own mapping (false: they come from `malloc`, unprotected).
    pub const MAPS: bool = true;

    /// `len` bytes of fresh, zeroed, dump-excluded memory (`len` a multiple of the page size).
    ///
    /// # Safety
    /// The mapping is released only by `unmap`, once.
    pub unsafe fn map(len: usize) -> Option<*mut u8> {
        // SAFETY: a new anonymous private mapping; it overlaps nothing of ours.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: the mapping just made; madvise only changes how the kernel dumps it.
        #[cfg(target_os = "linux")]
        unsafe {
            libc::madvise(p, len, libc::MADV_DONTDUMP)
        };
        Some(p as *mut u8)
    }

    /// # Safety
    /// `p` and `len` are one mapping of `map`, not used afterwards.
    pub unsafe fn unmap(p: *mut u8, len: usize) {
        // SAFETY: the caller's contract.
        unsafe { libc::munmap(p.cast(), len) };
    }

    /// # Safety
    /// Page-aligned range of one of our mappings.
    pub unsafe fn lock(p: *mut u8, len: usize) -> bool {
        // SAFETY: the caller's contract; mlock changes residency, not contents.
        unsafe { libc::mlock(p.cast(), len) == 0 }
    }

    /// # Safety
    /// Page-aligned range of one of our mappings.
    pub unsafe fn unlock(p: *mut u8, len: usize) {
        // SAFETY: the caller's contract; munlock changes residency, not contents.
        unsafe { libc::munlock(p.cast(), len) };
    }
}

/// No mappings on other platforms: big and small blocks come from `malloc`, and are counted as
/// unlocked.
#[cfg(not(any(unix, windows)))]
mod other {
    pub const MAPS: bool = false;

    /// # Safety
    /// None (nothing is mapped); unsafe to match the other platforms.
    pub unsafe fn map(_len: usize) -> Option<*mut u8> {
        None
    }

    /// # Safety
    /// None; see `map`.
    pub unsafe fn unmap(_p: *mut u8, _len: usize) {}

    /// # Safety
    /// None; see `map`.
    pub unsafe fn lock(_p: *mut u8, _len: usize) -> bool {
        false
    }

    /// # Safety
    /// None; see `map`.
    pub unsafe fn unlock(_p: *mut u8, _len: usize) {}
}
