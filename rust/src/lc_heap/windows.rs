//! The aws-lc heap's platform calls on Windows: `VirtualAlloc`ed pages (zeroed, 64 KiB
//! aligned), locked with `VirtualLock` within the working set, which is raised when its quota
//! is what refuses (see win.rs). Windows has no per-page exclusion from crash dumps; every
//! block is still wiped on free.

use windows_sys::Win32::System::Memory::{VirtualFree, VirtualUnlock, MEM_RELEASE};

/// Big blocks get their own mapping, as on Unix.
pub const MAPS: bool = true;

/// `len` bytes of fresh, zeroed memory (`len` a multiple of the page size).
///
/// # Safety
/// Released only by `unmap`.
pub unsafe fn map(len: usize) -> Option<*mut u8> {
    // SAFETY: a new private allocation.
    let p = unsafe { crate::win::alloc_pages(len) };
    (!p.is_null()).then_some(p)
}

/// # Safety
/// `p` came from `map` and is not used afterwards.
pub unsafe fn unmap(p: *mut u8, _len: usize) {
    // SAFETY: the caller's contract; MEM_RELEASE frees the whole allocation (size 0).
    unsafe { VirtualFree(p.cast(), 0, MEM_RELEASE) };
}

/// # Safety
/// Page-aligned range of one of our mappings.
pub unsafe fn lock(p: *mut u8, len: usize) -> bool {
    // SAFETY: the caller's contract.
    unsafe { crate::win::lock(p, len) }
}

/// # Safety
/// Page-aligned range of one of our mappings.
pub unsafe fn unlock(p: *mut u8, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { VirtualUnlock(p.cast(), len) };
}
