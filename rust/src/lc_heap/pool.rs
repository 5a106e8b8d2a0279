//! The slabs aws-lc's small blocks come from (a free list per power-of-two size class, pages
//! locked as blocks are placed in them), big blocks in mappings of their own, and the block
//! header that tells `release` which is which.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::os::raw::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

use zeroize::Zeroize;

use super::*;

/// A slab, which of its pages are locked (bit i: page i) and how many live blocks each holds.
///
/// Invariant: a `Slab` in `Pool::slabs[..slab_count]` was made by `new_slab` and its `start` is
/// a live `SLAB_BYTES` mapping of this process (slabs are never unmapped), so any whole page of
/// it may be locked or unlocked.
#[derive(Clone, Copy)]
struct Slab {
    start: *mut u8,
    locked_pages: u64,
    live: [u16; MAX_SLAB_PAGES],
}

/// Free lists (one per size class; the next pointer lives in a free block's first 8 bytes),
/// the unused tail of the current slab, and the slabs made so far.
struct Pool {
    free: [*mut u8; CLASSES],
    cursor: *mut u8,
    end: *mut u8,
    slabs: [Slab; MAX_SLABS],
    slab_count: usize,
    /// Live big blocks that are locked (start of the mapping, length); null: a free entry.
    big: [(*mut u8, usize); MAX_TRACKED_BIG],
}

/// The pool behind a spin lock rather than a `Mutex`: `fork` must be able to take it in its
/// prepare handler and release it in the child (see `install`), so that a child forked while
/// another thread was inside aws-lc does not inherit a held lock or a half-updated free list.
struct PoolLock {
    held: AtomicBool,
    pool: UnsafeCell<Pool>,
}

// SAFETY: `pool` is only reached through `PoolGuard`, which holds `held`.
unsafe impl Sync for PoolLock {}

static POOL: PoolLock = PoolLock {
    held: AtomicBool::new(false),
    pool: UnsafeCell::new(Pool {
        free: [std::ptr::null_mut(); CLASSES],
        cursor: std::ptr::null_mut(),
        end: std::ptr::null_mut(),
        slabs: [Slab {
            start: std::ptr::null_mut(),
            locked_pages: 0,
            live: [0; MAX_SLAB_PAGES],
        }; MAX_SLABS],
        slab_count: 0,
        big: [(std::ptr::null_mut(), 0); MAX_TRACKED_BIG],
    }),
};

impl PoolLock {
    fn acquire(&self) {
        while self
            .held
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
    }

    fn release(&self) {
        self.held.store(false, Ordering::Release);
    }
}

struct PoolGuard;

impl Deref for PoolGuard {
    type Target = Pool;
    fn deref(&self) -> &Pool {
        // SAFETY: the guard exists only while `held` is ours.
        unsafe { &*POOL.pool.get() }
    }
}

impl DerefMut for PoolGuard {
    fn deref_mut(&mut self) -> &mut Pool {
        // SAFETY: as above, and there is one guard at a time.
        unsafe { &mut *POOL.pool.get() }
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        POOL.release();
    }
}

/// Hold the pool across a `fork` (the prepare handler), so no thread is halfway through an
/// update when the child is made.
#[cfg(unix)]
pub(super) fn hold_for_fork() {
    POOL.acquire();
}

/// Release what `hold_for_fork` held (the parent and child handlers).
#[cfg(unix)]
pub(super) fn release_after_fork() {
    POOL.release();
}

fn lock_pool() -> PoolGuard {
    POOL.acquire();
    PoolGuard
}

pub(super) fn class_of(total: usize) -> Option<usize> {
    if total > MAX_BLOCK {
        return None;
    }
    let shift = total.next_power_of_two().trailing_zeros() as usize;
    Some(shift.max(MIN_SHIFT) - MIN_SHIFT)
}

/// A fresh slab, dump-excluded; its pages are locked as blocks are placed in them.
fn new_slab(pool: &mut Pool) -> bool {
    if pool.slab_count == MAX_SLABS || SLAB_BYTES / crate::page::size() > MAX_SLAB_PAGES {
        return false;
    }
    // SAFETY: a new mapping, never unmapped: slabs live as long as the process.
    let Some(start) = (unsafe { sys::map(SLAB_BYTES) }) else {
        return false;
    };
    SLAB_TOTAL.fetch_add(SLAB_BYTES, Ordering::SeqCst);
    pool.slabs[pool.slab_count] = Slab {
        start,
        locked_pages: 0,
        live: [0; MAX_SLAB_PAGES],
    };
    pool.slab_count += 1;
    pool.cursor = start;
    // One past the end of the mapping just made: in bounds for `add`.
    pool.end = start.wrapping_add(SLAB_BYTES);
    true
}

/// The slab holding `block`, and the first and last page of `len` bytes from it.
fn pages_of(pool: &Pool, block: *mut u8, len: usize) -> Option<(usize, usize, usize)> {
    let at = block as usize;
    let index = pool.slabs[..pool.slab_count]
        .iter()
        .rposition(|s| (s.start as usize..s.start as usize + SLAB_BYTES).contains(&at))?;
    let offset = at - pool.slabs[index].start as usize;
    let page = crate::page::size();
    Some((index, offset / page, (offset + len - 1) / page))
}

/// Lock page `i` (< `MAX_SLAB_PAGES`) of a slab if the budget and the limit allow.
fn lock_page(slab: &mut Slab, i: usize) -> bool {
    let page = crate::page::size();
    if SLAB_LOCKED.load(Ordering::SeqCst) + page > MAX_LOCKED_BYTES {
        return false;
    }
    // SAFETY: a whole page of a live slab (`Slab`'s invariant; `new_slab` refuses a page size
    // that would put page `MAX_SLAB_PAGES - 1` past its end).
    if !unsafe { sys::lock(slab.start.wrapping_add(i * page), page) } {
        return false;
    }
    slab.locked_pages |= 1 << i;
    SLAB_LOCKED.fetch_add(page, Ordering::SeqCst);
    true
}

/// A block of `len` bytes is placed at `block`: its pages are in use (locked when possible).
fn use_pages(pool: &mut Pool, block: *mut u8, len: usize) {
    let Some((index, first, last)) = pages_of(pool, block, len) else {
        return;
    };
    let slab = &mut pool.slabs[index];
    for i in first..=last {
        slab.live[i] += 1;
        if slab.live[i] == 1 && slab.locked_pages & (1 << i) == 0 && !lock_page(slab, i) {
            // Wiped buffers kept for reuse may be what stands between aws-lc's memory (the
            // key) and RLIMIT_MEMLOCK: they give way, as they do for a new LockedBuf.
            if crate::secret::release_pool() > 0 && lock_page(slab, i) {
                continue;
            }
            SLAB_UNLOCKED.fetch_add(crate::page::size(), Ordering::SeqCst);
            LOCK_FAILURES.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The block at `block` was freed. A page it leaves empty keeps its lock (for reuse, without a
/// system call per allocation) unless pages in use are waiting for one: then it hands it over.
fn unuse_pages(pool: &mut Pool, block: *mut u8, len: usize) {
    let Some((index, first, last)) = pages_of(pool, block, len) else {
        return;
    };
    let page = crate::page::size();
    let mut handed_over = false;
    let slab = &mut pool.slabs[index];
    for i in first..=last {
        slab.live[i] -= 1;
        if slab.live[i] != 0 {
            continue;
        }
        if slab.locked_pages & (1 << i) == 0 {
            sub(&SLAB_UNLOCKED, page);
        } else if SLAB_UNLOCKED.load(Ordering::SeqCst) > 0 {
            // SAFETY: a whole page of a live slab (`Slab`'s invariant), locked by `lock_page`.
            unsafe { sys::unlock(slab.start.wrapping_add(i * page), page) };
            slab.locked_pages &= !(1 << i);
            sub(&SLAB_LOCKED, page);
            handed_over = true;
        }
    }
    if handed_over {
        lock_waiting_pages(pool);
    }
}

/// Lock pages in use that are not locked, while the limit allows.
fn lock_waiting_pages(pool: &mut Pool) {
    let count = pool.slab_count;
    for slab in &mut pool.slabs[..count] {
        for i in 0..MAX_SLAB_PAGES {
            if slab.live[i] > 0 && slab.locked_pages & (1 << i) == 0 {
                if !lock_page(slab, i) {
                    return;
                }
                sub(&SLAB_UNLOCKED, crate::page::size());
            }
        }
    }
}

/// Write a block's `HEADER` bytes: magic, kind, class (or locked flag), fork generation, size.
///
/// # Safety
/// `block` must be valid for writes of `HEADER` bytes.
unsafe fn write_header(block: *mut u8, kind: u8, class: u8, size: usize) {
    let h = block;
    // SAFETY: every write is inside the `HEADER` (16) bytes the caller vouches for; the u32 and
    // u64 ones are unaligned writes.
    unsafe {
        (h as *mut u32).write_unaligned(MAGIC);
        h.add(4).write(kind);
        h.add(5).write(class);
        h.add(6).write(GENERATION.load(Ordering::SeqCst));
        (h.add(8) as *mut u64).write_unaligned(size as u64);
    }
}

/// Bytes of the mapping behind a big block of `size` bytes (header included).
fn mapped_len(size: usize) -> usize {
    let page = crate::page::size();
    (size + HEADER).div_ceil(page) * page
}

/// `size` bytes for aws-lc (null when out of memory), after a `HEADER` that `release` and
/// `usable_size` read back: a block of a slab's size class, a mapping of its own for a big one,
/// or `malloc` where there are no mappings.
pub(super) fn allocate(size: usize) -> *mut u8 {
    let Some(total) = size.checked_add(HEADER) else {
        return std::ptr::null_mut();
    };
    if let Some(class) = class_of(total) {
        let block_size = 1usize << (class + MIN_SHIFT);
        let mut pool = lock_pool();
        let mut block = pool.free[class];
        if !block.is_null() {
            // SAFETY: a free block of this class, inside a live slab and at least 32 bytes, of
            // which the first 8 (8-aligned: blocks are placed at multiples of their power-of-two
            // size in page-aligned slabs) hold the next free block; the pool lock is ours.
            unsafe {
                pool.free[class] = (block as *mut *mut u8).read();
                (block as *mut *mut u8).write(std::ptr::null_mut());
            }
        } else {
            let room = |p: &Pool| {
                !p.cursor.is_null() && (p.end as usize) - (p.cursor as usize) >= block_size
            };
            if room(&pool) || (new_slab(&mut pool) && room(&pool)) {
                block = pool.cursor;
                // At most the end of the slab (`room` checked it).
                pool.cursor = pool.cursor.wrapping_add(block_size);
            }
        }
        if !block.is_null() {
            use_pages(&mut pool, block, block_size);
        }
        drop(pool);
        if !block.is_null() {
            // SAFETY: the block is ours alone now and `block_size` >= `total` = `HEADER` + size.
            unsafe { write_header(block, KIND_POOL, class as u8, size) };
            LIVE_POOL_BLOCKS.fetch_add(1, Ordering::SeqCst);
            return block.wrapping_add(HEADER);
        }
    }
    if total >= isize::MAX as usize / 2 {
        return std::ptr::null_mut();
    }
    let len = mapped_len(size);
    // SAFETY: a new mapping, unmapped only by `release` of the block placed in it.
    if let Some(block) = unsafe { sys::map(len) } {
        // SAFETY: the whole mapping just made (`len` is a multiple of the page size).
        let locked = unsafe { sys::lock(block, len) };
        if locked {
            MAPPED_LOCKED.fetch_add(len, Ordering::SeqCst);
            let mut pool = lock_pool();
            if let Some(entry) = pool.big.iter_mut().find(|(start, _)| start.is_null()) {
                *entry = (block, len);
            }
        } else {
            MAPPED_UNLOCKED.fetch_add(len, Ordering::SeqCst);
            LOCK_FAILURES.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: the mapping is `len` >= `HEADER` + size bytes, ours alone.
        unsafe { write_header(block, KIND_MAPPED, u8::from(locked), size) };
        LIVE_MAPPED_BLOCKS.fetch_add(1, Ordering::SeqCst);
        return block.wrapping_add(HEADER);
    }
    if sys::MAPS {
        return std::ptr::null_mut(); // out of memory
    }
    // SAFETY: malloc has no preconditions; its result is checked for null before use.
    let block = unsafe { libc::malloc(total) } as *mut u8;
    if block.is_null() {
        return block;
    }
    // SAFETY: `total` = `HEADER` + size bytes just allocated.
    unsafe { write_header(block, KIND_SYSTEM, 0, size) };
    MAPPED_UNLOCKED.fetch_add(total, Ordering::SeqCst);
    LIVE_MAPPED_BLOCKS.fetch_add(1, Ordering::SeqCst);
    block.wrapping_add(HEADER)
}

/// Size of the caller's part of the allocation at `ptr`.
///
/// # Safety
/// `ptr` must be a live allocation of `allocate`, or of aws-lc's default allocator (which
/// keeps the size in the `FOREIGN_PREFIX` bytes before it).
pub(super) unsafe fn usable_size(ptr: *mut u8) -> usize {
    // SAFETY: both kinds of allocation keep at least `FOREIGN_PREFIX` (8) readable bytes before
    // `ptr`; ours keep `HEADER` (16), whose magic tells them apart. An aws-lc allocation of
    // fewer than 16 prefix bytes is a malloc'ed block (at least 16 bytes from malloc's own
    // header on the heap), so the magic read stays inside mapped memory.
    unsafe {
        let block = ptr.sub(HEADER);
        if (block as *const u32).read_unaligned() == MAGIC {
            (block.add(8) as *const u64).read_unaligned() as usize
        } else {
            (ptr.sub(FOREIGN_PREFIX) as *const usize).read_unaligned()
        }
    }
}

/// Wipe and free the allocation at `ptr` (its pages unlocked or kept for reuse).
///
/// # Safety
/// `ptr` must be a live allocation of `allocate`, or of aws-lc's default allocator, and is
/// not used afterwards.
pub(super) unsafe fn release(ptr: *mut u8) {
    // SAFETY: as in `usable_size`, the header (or the foreign size prefix) precedes `ptr`.
    let block = unsafe { ptr.sub(HEADER) };
    // SAFETY: as above.
    if unsafe { (block as *const u32).read_unaligned() } != MAGIC {
        // Allocated by aws-lc's default allocator before `install`: size prefix + malloc.
        // SAFETY: that allocator's layout: `malloc(size + 8)`, the size in the first 8 bytes,
        // the caller's `size` bytes after them; freed once, by the caller's contract.
        unsafe {
            let start = ptr.sub(FOREIGN_PREFIX);
            let size = (start as *const usize).read_unaligned();
            std::slice::from_raw_parts_mut(start, size + FOREIGN_PREFIX).zeroize();
            libc::free(start as *mut c_void);
        }
        return;
    }
    // SAFETY: our `HEADER`, written by `write_header`.
    let (kind, class_or_locked, generation, size) = unsafe {
        (
            block.add(4).read(),
            block.add(5).read(),
            block.add(6).read(),
            (block.add(8) as *const u64).read_unaligned() as usize,
        )
    };
    match kind {
        KIND_POOL => {
            let class = class_or_locked as usize;
            let block_size = 1usize << (class + MIN_SHIFT);
            // SAFETY: the whole block of its size class, ours again (the caller is done).
            unsafe { std::slice::from_raw_parts_mut(block, block_size).zeroize() };
            let mut pool = lock_pool();
            // SAFETY: the block's first 8 bytes (aligned, see `allocate`) now hold the free
            // list's link; the pool lock is ours.
            unsafe { (block as *mut *mut u8).write(pool.free[class]) };
            pool.free[class] = block;
            unuse_pages(&mut pool, block, block_size);
            LIVE_POOL_BLOCKS.fetch_sub(1, Ordering::SeqCst);
        }
        KIND_MAPPED => {
            let len = mapped_len(size);
            // Locked by this process (not inherited across a fork) or not.
            let locked = class_or_locked == 1 && generation == GENERATION.load(Ordering::SeqCst);
            if locked {
                let mut pool = lock_pool();
                if let Some(entry) = pool.big.iter_mut().find(|(start, _)| *start == block) {
                    *entry = (std::ptr::null_mut(), 0);
                }
            }
            // SAFETY: the block's own mapping of `len` bytes, made by `allocate`.
            unsafe { std::slice::from_raw_parts_mut(block, len).zeroize() };
            sub(
                if locked {
                    &MAPPED_LOCKED
                } else {
                    &MAPPED_UNLOCKED
                },
                len,
            );
            // SAFETY: as above, unmapped once (the caller's contract).
            unsafe { sys::unmap(block, len) };
            LIVE_MAPPED_BLOCKS.fetch_sub(1, Ordering::SeqCst);
        }
        _ => {
            // SAFETY: `allocate`'s malloc of `HEADER` + size bytes, freed once.
            unsafe {
                std::slice::from_raw_parts_mut(block, size + HEADER).zeroize();
                libc::free(block as *mut c_void);
            }
            sub(&MAPPED_UNLOCKED, size + HEADER);
            LIVE_MAPPED_BLOCKS.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// In a fork child: lock the inherited slab pages that were locked in the parent again; pages
/// in use that cannot be locked, and every inherited big block, count as unlocked.
pub(super) fn relock_after_fork() {
    if !RELOCK_PENDING.load(Ordering::SeqCst) {
        return;
    }
    let mut pool = lock_pool();
    if !RELOCK_PENDING.swap(false, Ordering::SeqCst) {
        return;
    }
    SLAB_LOCKED.store(0, Ordering::SeqCst);
    let page = crate::page::size();
    let count = pool.slab_count;
    for slab in &mut pool.slabs[..count] {
        for i in 0..MAX_SLAB_PAGES {
            if slab.locked_pages & (1 << i) == 0 {
                continue;
            }
            // SAFETY: a page of one of our slabs, mapped for the process's lifetime.
            if unsafe { sys::lock(slab.start.add(i * page), page) } {
                SLAB_LOCKED.fetch_add(page, Ordering::SeqCst);
            } else {
                slab.locked_pages &= !(1 << i);
                LOCK_FAILURES.fetch_add(1, Ordering::SeqCst);
                if slab.live[i] > 0 {
                    SLAB_UNLOCKED.fetch_add(page, Ordering::SeqCst);
                }
            }
        }
    }
    let inherited_big = MAPPED_LOCKED.swap(0, Ordering::SeqCst);
    let mut relocked_big = 0;
    for (start, len) in pool.big.iter_mut().filter(|(start, _)| !start.is_null()) {
        // SAFETY: a live big block's mapping.
        if unsafe { sys::lock(*start, *len) } {
            relocked_big += *len;
            // SAFETY: the block's header, written by `allocate`.
            unsafe { start.add(6).write(GENERATION.load(Ordering::SeqCst)) };
        } else {
            *start = std::ptr::null_mut();
            LOCK_FAILURES.fetch_add(1, Ordering::SeqCst);
        }
    }
    MAPPED_LOCKED.fetch_add(relocked_big, Ordering::SeqCst);
    MAPPED_UNLOCKED.fetch_add(inherited_big.saturating_sub(relocked_big), Ordering::SeqCst);
}

/// True when every block on the free lists is all zero past its link (for tests).
pub fn free_blocks_are_wiped() -> bool {
    let pool = lock_pool();
    for (class, head) in pool.free.iter().enumerate() {
        let size = 1usize << (class + MIN_SHIFT);
        let mut block = *head;
        while !block.is_null() {
            // SAFETY: free blocks are `size` bytes inside our slabs; only we write them.
            let bytes = unsafe { std::slice::from_raw_parts(block, size) };
            if bytes[8..].iter().any(|&b| b != 0) {
                return false;
            }
            // SAFETY: a free block's first 8 bytes (aligned) hold the next one (`allocate`).
            block = unsafe { (block as *mut *mut u8).read() };
        }
    }
    true
}
