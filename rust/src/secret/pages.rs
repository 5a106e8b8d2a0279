//! Whole-page arithmetic, and the locks on a caller's buffer (`BufferLock`): its pages are
//! shared with other heap objects, so their locks are reference-counted per page.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};

use super::os;
use super::status::{
    fork_generation, record_dump_exclusion, record_lock, sub, BYTES_LOCKED, BYTES_UNLOCKED,
};

/// The whole pages covering `[addr, addr + len)`: (first page address, byte length).
pub(super) fn page_span(addr: usize, len: usize) -> (usize, usize) {
    let page = os::page_size();
    let start = addr & !(page - 1);
    let end = (addr + len).div_ceil(page) * page;
    (start, end - start)
}

/// A page of a caller's buffer under `lock_pages`: how many ranges hold it, and whether it is
/// locked (it is excluded from dumps either way). `generation` is the fork generation that
/// locked it: a fork child inherits the page and this record, but not the lock.
pub(super) struct SharedPage {
    pub(super) holders: usize,
    locked: bool,
    generation: u32,
}

impl SharedPage {
    fn locked_now(&self) -> bool {
        self.locked && self.generation == fork_generation()
    }
}

static PAGES: OnceLock<Mutex<HashMap<usize, SharedPage>>> = OnceLock::new();

pub(super) fn shared_pages() -> &'static Mutex<HashMap<usize, SharedPage>> {
    PAGES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// True once the shared-page table exists.
pub(super) fn shared_pages_ready() -> bool {
    PAGES.get().is_some()
}

/// Split sorted page addresses into contiguous runs: (first page, byte length).
pub(super) fn page_runs(pages: &[usize], page: usize) -> Vec<(usize, usize)> {
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
        // SAFETY: whole pages under the caller's range, mapped (the caller's contract: a page
        // holding a mapped byte is mapped whole).
        record_dump_exclusion(unsafe { os::exclude_from_dumps(run as *mut u8, run_len) });
    }
    if unlocked.is_empty() {
        return true;
    }
    let mut all_locked = true;
    let mut newly_locked = 0;
    for (run, run_len) in page_runs(&unlocked, page) {
        // SAFETY: as above.
        if unsafe { os::lock(run as *mut u8, run_len) } {
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
            // SAFETY: as above.
            unsafe { os::unlock(run as *mut u8, run_len) };
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
        // SAFETY: pages under the caller's range, which `lock_pages` locked and which are still
        // mapped (the caller's contract); no other range holds them any more.
        unsafe { os::unlock(run as *mut u8, run_len) };
    }
    for (run, run_len) in page_runs(&released, page) {
        // SAFETY: as above.
        unsafe { os::include_in_dumps(run as *mut u8, run_len) };
    }
    sub(&BYTES_LOCKED, to_unlock.len() * page);
}
