//! Windows page calls shared by `LockedBuf` (secret.rs) and the aws-lc heap (lc_heap.rs).
//!
//! `VirtualLock` is bounded by the process's minimum working set (about 200 KB by default),
//! which is less than the aws-lc heap plus the buffer pool. When a lock fails on that quota,
//! the working set is raised by the range's size (plus slack for the pages the process keeps
//! resident anyway) with `SetProcessWorkingSetSize`, and the lock is tried once more. What
//! still cannot be locked is reported by the callers as a lock failure.
//!
//! Windows has no per-page exclusion from crash dumps like Linux's `MADV_DONTDUMP`.
//! `WerRegisterExcludedMemoryBlock` only keeps blocks out of Windows Error Reporting's own
//! reports (at most 512 of them), not out of dumps taken by debuggers, Task Manager or
//! procdump, so it is not used and the memory report says no dump exclusion.

use std::sync::Mutex;

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_NO_SYSTEM_RESOURCES, ERROR_WORKING_SET_QUOTA,
};
use windows_sys::Win32::System::Memory::{
    VirtualAlloc, VirtualLock, MEM_COMMIT, MEM_RESERVE, PAGE_READWRITE,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetProcessWorkingSetSize, SetProcessWorkingSetSize,
};

/// Extra working set asked for beyond the range itself: the lock counts against the same
/// quota as the code, stacks and heap the process keeps resident.
const SLACK_BYTES: usize = 1024 * 1024;

/// One raise at a time, so two threads do not both add their range to a stale minimum.
static GROW: Mutex<()> = Mutex::new(());

/// Lock a range into physical memory, raising the working set once when its quota is what
/// refuses the lock.
///
/// # Safety
/// `addr..addr + len` is committed memory of this process.
pub unsafe fn lock(addr: *mut u8, len: usize) -> bool {
    // SAFETY: the caller's contract.
    if unsafe { VirtualLock(addr.cast(), len) } != 0 {
        return true;
    }
    // SAFETY: no preconditions.
    let error = unsafe { GetLastError() };
    if error != ERROR_WORKING_SET_QUOTA && error != ERROR_NO_SYSTEM_RESOURCES {
        return false;
    }
    // SAFETY: the caller's contract, as above.
    grow_working_set(len) && unsafe { VirtualLock(addr.cast(), len) } != 0
}

/// Raise the process's minimum and maximum working set by `extra` bytes plus slack.
fn grow_working_set(extra: usize) -> bool {
    let _one_at_a_time = GROW.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (mut min, mut max) = (0usize, 0usize);
    // SAFETY: GetCurrentProcess returns a pseudo-handle; the out-pointers are valid.
    unsafe {
        let process = GetCurrentProcess();
        if GetProcessWorkingSetSize(process, &mut min, &mut max) == 0 {
            return false;
        }
        let add = extra.saturating_add(SLACK_BYTES);
        let new_min = min.saturating_add(add);
        let new_max = max.saturating_add(add).max(new_min);
        SetProcessWorkingSetSize(process, new_min, new_max) != 0
    }
}

/// Fresh committed, zero-filled read-write pages (null on failure).
///
/// # Safety
/// Released, if ever, with `VirtualFree(p, 0, MEM_RELEASE)`.
pub unsafe fn alloc_pages(len: usize) -> *mut u8 {
    // SAFETY: a new private allocation; no existing memory is touched.
    unsafe {
        VirtualAlloc(
            std::ptr::null(),
            len,
            MEM_COMMIT | MEM_RESERVE,
            PAGE_READWRITE,
        )
    }
    .cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use windows_sys::Win32::System::Memory::{VirtualFree, VirtualUnlock, MEM_RELEASE};

    #[test]
    fn locks_far_beyond_the_default_working_set() {
        // The default minimum working set is about 200 KB: 16 MiB cannot be locked without
        // raising it, and must be (wine does not enforce the quota; Windows does).
        let len = 16 << 20;
        // SAFETY: test-only pages, released below.
        unsafe {
            let pages = alloc_pages(len);
            assert!(!pages.is_null());
            assert!(lock(pages, len), "VirtualLock of 16 MiB failed");
            VirtualUnlock(pages.cast(), len);
            VirtualFree(pages.cast(), 0, MEM_RELEASE);
        }
    }
}
