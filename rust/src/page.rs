//! The system's page size, read once, for `LockedBuf` (secret) and aws-lc's heap (lc_heap).
//!
//! Cached in an atomic rather than a `OnceLock`: aws-lc's allocator callbacks and fork children
//! read it, and neither may wait on a lock that another thread could hold (or have held at the
//! fork). Two threads racing on the first read both ask the system and store the same value.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The page size in bytes (a power of two).
pub fn size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            let page = query();
            PAGE.store(page, Ordering::Relaxed);
            page
        }
        page => page,
    }
}

#[cfg(unix)]
fn query() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

#[cfg(windows)]
fn query() -> usize {
    use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};
    let mut info = std::mem::MaybeUninit::<SYSTEM_INFO>::zeroed();
    // SAFETY: GetSystemInfo fills the struct it is given, which is then initialised.
    unsafe {
        GetSystemInfo(info.as_mut_ptr());
        info.assume_init().dwPageSize as usize
    }
}

#[cfg(not(any(unix, windows)))]
fn query() -> usize {
    4096
}
