//! The platform calls behind `LockedBuf` and `BufferLock`: lock, unlock, dump exclusion,
//! the lock limit.

pub use crate::page::size as page_size;
pub use imp::*;

#[cfg(unix)]
mod imp {
    #[cfg(target_os = "linux")]
    pub const PLATFORM: &str = "linux";
    #[cfg(target_os = "macos")]
    pub const PLATFORM: &str = "darwin";
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    pub const PLATFORM: &str = std::env::consts::OS;
    pub const GUARD_PAGES: bool = true;

    /// # Safety
    /// Page-aligned range of this process's memory.
    pub unsafe fn lock(addr: *mut u8, len: usize) -> bool {
        // SAFETY: the caller's contract; mlock changes residency, not contents.
        unsafe { libc::mlock(addr.cast(), len) == 0 }
    }

    /// # Safety
    /// Page-aligned range of this process's memory.
    pub unsafe fn unlock(addr: *mut u8, len: usize) {
        // SAFETY: the caller's contract; munlock changes residency, not contents.
        unsafe { libc::munlock(addr.cast(), len) };
    }

    /// `Some(applied)` where the platform can exclude pages from core dumps, else `None`.
    ///
    /// # Safety
    /// Page-aligned range of this process's memory.
    pub unsafe fn exclude_from_dumps(addr: *mut u8, len: usize) -> Option<bool> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: the caller's contract; the advice changes how the kernel dumps the pages,
            // not their contents.
            let applied = unsafe { libc::madvise(addr.cast(), len, libc::MADV_DONTDUMP) } == 0;
            Some(applied)
        }
        #[cfg(any(target_os = "freebsd", target_os = "dragonfly"))]
        {
            // SAFETY: as above.
            let applied = unsafe { libc::madvise(addr.cast(), len, libc::MADV_NOCORE) } == 0;
            Some(applied)
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
        // SAFETY: the caller's contract; as in `exclude_from_dumps`.
        #[cfg(target_os = "linux")]
        unsafe {
            libc::madvise(addr.cast(), len, libc::MADV_DODUMP)
        };
        // SAFETY: as above.
        #[cfg(any(target_os = "freebsd", target_os = "dragonfly"))]
        unsafe {
            libc::madvise(addr.cast(), len, libc::MADV_CORE)
        };
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

    /// Whether `mlock` may go past RLIMIT_MEMLOCK here: on Linux, with CAP_IPC_LOCK in the
    /// effective set (root outside a container, or a service granted it), the kernel does not
    /// apply the limit to it.
    pub fn locks_past_limit() -> bool {
        #[cfg(target_os = "linux")]
        {
            // capget(2) with the version-3 layout: two sets of 32 capability bits.
            #[repr(C)]
            struct Header {
                version: u32,
                pid: libc::c_int,
            }
            #[repr(C)]
            #[derive(Clone, Copy, Default)]
            struct Sets {
                effective: u32,
                permitted: u32,
                inheritable: u32,
            }
            const VERSION_3: u32 = 0x2008_0522;
            const CAP_IPC_LOCK: u32 = 14;
            let mut header = Header {
                version: VERSION_3,
                pid: 0,
            };
            let mut sets = [Sets::default(); 2];
            // SAFETY: a valid header and room for the two sets version 3 writes.
            let read = unsafe {
                libc::syscall(
                    libc::SYS_capget,
                    std::ptr::addr_of_mut!(header),
                    sets.as_mut_ptr(),
                )
            } == 0;
            read && sets[0].effective & (1 << CAP_IPC_LOCK) != 0
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }
}

#[cfg(windows)]
mod imp {
    use windows_sys::Win32::System::Memory::VirtualUnlock;

    pub const PLATFORM: &str = "windows";
    pub const GUARD_PAGES: bool = true;

    /// Within the working set, raised when its quota refuses (see win.rs).
    ///
    /// # Safety
    /// Range of this process's committed memory.
    pub unsafe fn lock(addr: *mut u8, len: usize) -> bool {
        // SAFETY: the caller's contract, which is win::lock's.
        unsafe { crate::win::lock(addr, len) }
    }

    /// # Safety
    /// Range of this process's committed memory.
    pub unsafe fn unlock(addr: *mut u8, len: usize) {
        // SAFETY: the caller's contract; VirtualUnlock changes residency, not contents.
        unsafe { VirtualUnlock(addr.cast(), len) };
    }

    /// Windows has no per-page dump exclusion.
    ///
    /// # Safety
    /// None (nothing is done); unsafe to match the Unix call.
    pub unsafe fn exclude_from_dumps(_addr: *mut u8, _len: usize) -> Option<bool> {
        None
    }

    /// # Safety
    /// None; see `exclude_from_dumps`.
    pub unsafe fn include_in_dumps(_addr: *mut u8, _len: usize) {}

    /// The working-set quota, not an RLIMIT, bounds VirtualLock on Windows.
    pub fn lock_limit() -> Option<u64> {
        None
    }

    /// No RLIMIT to go past (see `lock_limit`).
    pub fn locks_past_limit() -> bool {
        false
    }
}
