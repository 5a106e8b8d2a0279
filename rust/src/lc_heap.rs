//! A locked, wiped heap for aws-lc's own allocations.
//!
//! aws-lc keeps the RSA private key (its big numbers, Montgomery and blinding state), the AES-GCM
//! key schedule and every OAEP scratch buffer in memory it gets from `OPENSSL_malloc`. By default
//! that is the ordinary heap: wiped on free (aws-lc cleanses in `OPENSSL_free`), but swappable and
//! included in core dumps for as long as it lives, which for a client key pair is the whole
//! session. `install` routes those allocations here instead (`CRYPTO_set_mem_functions`):
//!
//! - blocks up to `MAX_BLOCK` bytes come from slabs that are `MADV_DONTDUMP` and `mlock`ed page
//!   by page as blocks are placed in them (within `MAX_LOCKED_BYTES`, so LockedBufs keep most
//!   of RLIMIT_MEMLOCK). A page's lock follows its use: when the limit left pages in use
//!   unlocked (key generation's peak), pages that fall empty give their lock to those, so what
//!   stays live (the key) ends up locked under a small limit (64 KiB, a common container
//!   default), where locking whole slabs left it in unlocked memory;
//! - larger blocks (scrypt's tables) get a mapping each, dump-excluded and locked when the limit
//!   allows;
//! - every block is zeroed when freed, whatever its origin;
//! - what could not be locked is counted (`stats`), and `secret::memory_status` reports it;
//! - a fork child re-locks the slabs it inherited (locks are not inherited) the first time it
//!   enters aws-lc or reads the status; big blocks it inherited are reported as unlocked.
//!
//! `install` must run before aws-lc allocates anything (module init does it); a pointer that was
//! allocated earlier by aws-lc's default allocator is still recognised and freed correctly.
//!
//! It also makes the core fork-safe: every entry into aws-lc holds an `InsideLc`, and a
//! `pthread_atfork` prepare handler waits until none is held (and takes the pool lock), so a
//! child never inherits a key whose state another thread was updating.

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Once;

use zeroize::Zeroize;

const MAGIC: u32 = 0x4e4c_434b; // "NLCK"
const HEADER: usize = 16;
const KIND_POOL: u8 = 1;
/// From `malloc` (platforms without the mapping calls): neither locked nor dump-excluded.
const KIND_SYSTEM: u8 = 2;
/// A mapping of its own (blocks over `MAX_BLOCK`).
const KIND_MAPPED: u8 = 3;
/// Smallest block: 32 bytes (2^5), header included.
const MIN_SHIFT: usize = 5;
/// Largest pooled block: 32 KiB (2^15), header included.
const MAX_SHIFT: usize = 15;
const CLASSES: usize = MAX_SHIFT - MIN_SHIFT + 1;
/// Largest block (header included) served from the slabs; bigger ones get a mapping each.
pub const MAX_BLOCK: usize = 1 << MAX_SHIFT;
const SLAB_BYTES: usize = 128 * 1024;
/// Locked slab pages the heap may take; beyond it they are dump-excluded and wiped, not locked.
pub const MAX_LOCKED_BYTES: usize = 1024 * 1024;
/// Most slabs (16 MiB of small blocks); past it small blocks get mappings of their own.
const MAX_SLABS: usize = 128;
/// Most pages per slab the page tables below track (a 2 KiB page at least).
const MAX_SLAB_PAGES: usize = 64;
/// Big blocks remembered for re-locking in a fork child (others count as unlocked there).
const MAX_TRACKED_BIG: usize = 32;
/// aws-lc's default allocator stores the size in the 8 bytes before the pointer.
const FOREIGN_PREFIX: usize = 8;

static INSTALLED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
/// Slab pages locked now (in use, or empty and kept locked for reuse), and slab pages in use
/// that are not locked (the limit was reached, or a fork child could not lock them again).
static SLAB_LOCKED: AtomicUsize = AtomicUsize::new(0);
static SLAB_UNLOCKED: AtomicUsize = AtomicUsize::new(0);
/// Pages of live big blocks (and `malloc` blocks, never locked).
static MAPPED_LOCKED: AtomicUsize = AtomicUsize::new(0);
static MAPPED_UNLOCKED: AtomicUsize = AtomicUsize::new(0);
static SLAB_TOTAL: AtomicUsize = AtomicUsize::new(0);
static LOCK_FAILURES: AtomicUsize = AtomicUsize::new(0);
static LIVE_POOL_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static LIVE_MAPPED_BLOCKS: AtomicUsize = AtomicUsize::new(0);
/// Bumped in every fork child: a big block locked under another generation is not locked here.
static GENERATION: AtomicU8 = AtomicU8::new(0);
/// Set in a fork child until its inherited slab pages are locked again (`relock_after_fork`).
static RELOCK_PENDING: AtomicBool = AtomicBool::new(false);

/// Subtract without wrapping (counts inherited across a fork may already have been moved).
fn sub(counter: &AtomicUsize, n: usize) {
    let _ = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
        Some(v.saturating_sub(n))
    });
}

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

fn lock_pool() -> PoolGuard {
    POOL.acquire();
    PoolGuard
}

// ---- fork gate ---------------------------------------------------------------------------

/// The gate's whole state in one word, so that checking for a fork and counting an entry are
/// one atomic step: the low bits count threads inside aws-lc, the bits from `FORK_UNIT` up
/// count threads in `fork`. An entry is counted only while no fork is pending (a CAS on a
/// state without fork bits), so once a fork's bit is set the count can only fall, and when the
/// fork sees it at zero no thread can be inside or on its way in: the child never inherits a
/// count of a thread it does not have.
static GATE: AtomicUsize = AtomicUsize::new(0);
const FORK_UNIT: usize = 1 << (usize::BITS - 8);
const ENTRIES: usize = FORK_UNIT - 1;

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Tests: run after `enter` saw the gate open, and after it was counted.
    #[cfg(test)]
    static AFTER_CHECK: Cell<Option<fn()>> = const { Cell::new(None) };
    #[cfg(test)]
    static AFTER_COUNT: Cell<Option<fn()>> = const { Cell::new(None) };
}

/// Held while a thread is inside aws-lc through the core. `fork` waits until no thread holds
/// one: a child forked in the middle of an RSA operation inherits aws-lc state (blinding
/// slots, locks) that is half-updated, and aborts or hangs when it uses the key.
pub struct InsideLc {
    _not_send: PhantomData<*const ()>,
}

/// Enter aws-lc (re-entrant within a thread); blocks while a `fork` is in progress.
pub fn enter() -> InsideLc {
    DEPTH.with(|depth| {
        if depth.get() == 0 {
            let mut state = GATE.load(Ordering::SeqCst);
            loop {
                if state & !ENTRIES != 0 {
                    std::thread::yield_now();
                    state = GATE.load(Ordering::SeqCst);
                    continue;
                }
                #[cfg(test)]
                if let Some(hook) = AFTER_CHECK.take() {
                    hook();
                }
                match GATE.compare_exchange_weak(
                    state,
                    state + 1,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => break,
                    Err(now) => state = now,
                }
            }
            #[cfg(test)]
            if let Some(hook) = AFTER_COUNT.take() {
                hook();
            }
            relock_after_fork();
        }
        depth.set(depth.get() + 1);
    });
    InsideLc {
        _not_send: PhantomData,
    }
}

impl Drop for InsideLc {
    fn drop(&mut self) {
        DEPTH.with(|depth| {
            depth.set(depth.get() - 1);
            if depth.get() == 0 {
                GATE.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }
}

/// Threads inside aws-lc right now (for tests and the fork handlers).
#[cfg(any(unix, test))] // no fork on Windows
fn entries() -> usize {
    GATE.load(Ordering::SeqCst) & ENTRIES
}

/// Close the gate: no new entry from now on, and return once every thread inside has left.
#[cfg(any(unix, test))]
fn close_gate() {
    GATE.fetch_add(FORK_UNIT, Ordering::SeqCst);
    while entries() != 0 {
        std::thread::yield_now();
    }
}

/// `fork` prepare handler (see `crate::fork`): let every thread inside aws-lc finish, then
/// hold the pool.
#[cfg(unix)]
pub(crate) fn before_fork() {
    close_gate();
    POOL.acquire();
}

/// `fork` parent handler: this fork is done (another thread's may still be pending).
#[cfg(unix)]
pub(crate) fn after_fork_parent() {
    POOL.release();
    GATE.fetch_sub(FORK_UNIT, Ordering::SeqCst);
}

/// `fork` child handler: the child has one thread, this one, outside aws-lc. Its copies of
/// the heap's pages are not locked (locks are not inherited): they are locked again on the
/// next entry into aws-lc or status read (a system call per page is too much for every fork
/// that is followed by exec).
#[cfg(unix)]
pub(crate) fn after_fork_child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
    RELOCK_PENDING.store(true, Ordering::SeqCst);
    POOL.release();
    GATE.store(0, Ordering::SeqCst);
}

/// In a fork child: lock the inherited slab pages that were locked in the parent again; pages
/// in use that cannot be locked, and every inherited big block, count as unlocked.
fn relock_after_fork() {
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

/// What the pool holds right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `install` put the heap in place.
    pub installed: bool,
    /// Slab pages in use and big blocks that are locked in RAM now.
    pub locked_bytes: usize,
    /// Slab pages in use and big blocks that are not (limit reached, or a fork child's).
    pub unlocked_bytes: usize,
    /// Of `unlocked_bytes`: pages of small blocks (keys, contexts).
    pub small_unlocked_bytes: usize,
    /// Bytes of slabs mapped so far (slabs are kept for the process's lifetime).
    pub slab_bytes: usize,
    /// Pages that could not be locked (each counted once).
    pub lock_failures: usize,
    /// Live blocks served from the slabs.
    pub live_pool_blocks: usize,
    /// Live big blocks (a mapping each, or `malloc` where there are no mappings).
    pub live_mapped_blocks: usize,
}

/// The heap's counters (in a fork child, after re-locking what it inherited).
pub fn stats() -> Stats {
    relock_after_fork();
    Stats {
        installed: INSTALLED.load(Ordering::SeqCst),
        locked_bytes: SLAB_LOCKED.load(Ordering::SeqCst) + MAPPED_LOCKED.load(Ordering::SeqCst),
        unlocked_bytes: SLAB_UNLOCKED.load(Ordering::SeqCst)
            + MAPPED_UNLOCKED.load(Ordering::SeqCst),
        small_unlocked_bytes: SLAB_UNLOCKED.load(Ordering::SeqCst),
        slab_bytes: SLAB_TOTAL.load(Ordering::SeqCst),
        lock_failures: LOCK_FAILURES.load(Ordering::SeqCst),
        live_pool_blocks: LIVE_POOL_BLOCKS.load(Ordering::SeqCst),
        live_mapped_blocks: LIVE_MAPPED_BLOCKS.load(Ordering::SeqCst),
    }
}

/// Route aws-lc's allocations through this heap and make `fork` wait for threads inside
/// aws-lc (`enter`). Returns whether the heap is in place (false on platforms without
/// mmap/mlock, or if aws-lc already had custom memory functions).
pub fn install() -> bool {
    #[cfg(any(unix, windows))]
    INSTALL.call_once(|| {
        // SAFETY: the three callbacks follow aws-lc's malloc/realloc/free contracts.
        let ok = unsafe {
            aws_lc_sys::CRYPTO_set_mem_functions(Some(lc_malloc), Some(lc_realloc), Some(lc_free))
        };
        crate::fork::install();
        INSTALLED.store(ok == 1, Ordering::SeqCst);
    });
    INSTALLED.load(Ordering::SeqCst)
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

fn class_of(total: usize) -> Option<usize> {
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
fn allocate(size: usize) -> *mut u8 {
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
unsafe fn usable_size(ptr: *mut u8) -> usize {
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
unsafe fn release(ptr: *mut u8) {
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

/// The calls the heap needs from the platform: anonymous dump-excluded mappings and locking.
#[cfg(unix)]
mod sys {
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

/// Windows: VirtualAlloc'ed pages, locked with VirtualLock within the working set (lc_heap/windows.rs).
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as sys;

/// No mappings on other platforms: big and small blocks come from `malloc`, and are counted as
/// unlocked.
#[cfg(not(any(unix, windows)))]
mod sys {
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

/// aws-lc's `OPENSSL_malloc` hook.
///
/// # Safety
/// None beyond aws-lc's: the result is freed by `lc_free` (or resized by `lc_realloc`) once.
unsafe extern "C" fn lc_malloc(size: usize, _file: *const c_char, _line: c_int) -> *mut c_void {
    allocate(size) as *mut c_void
}

/// aws-lc's `OPENSSL_free` hook.
///
/// # Safety
/// `ptr` is null or a live allocation of `lc_malloc`/`lc_realloc` (or of aws-lc's default
/// allocator, before `install`), not used afterwards.
unsafe extern "C" fn lc_free(ptr: *mut c_void, _file: *const c_char, _line: c_int) {
    if !ptr.is_null() {
        // SAFETY: the caller's contract.
        unsafe { release(ptr as *mut u8) };
    }
}

/// aws-lc's `OPENSSL_realloc` hook: a fresh block, the old one copied and wiped.
///
/// # Safety
/// As `lc_free` for `ptr`, which is not used afterwards unless null is returned.
unsafe extern "C" fn lc_realloc(
    ptr: *mut c_void,
    new_size: usize,
    _file: *const c_char,
    _line: c_int,
) -> *mut c_void {
    if ptr.is_null() {
        return allocate(new_size) as *mut c_void;
    }
    let old = ptr as *mut u8;
    let fresh = allocate(new_size);
    if fresh.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `old` is a live allocation (the caller's contract) of `usable_size(old)` bytes,
    // `fresh` a new one of `new_size`, distinct from it; `old` is released once, after the copy.
    unsafe {
        let keep = usable_size(old).min(new_size);
        std::ptr::copy_nonoverlapping(old, fresh, keep);
        release(old); // wipes the old copy
    }
    fresh as *mut c_void
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes() {
        assert_eq!(class_of(1), Some(0));
        assert_eq!(class_of(32), Some(0));
        assert_eq!(class_of(33), Some(1));
        assert_eq!(class_of(MAX_BLOCK), Some(CLASSES - 1));
        assert_eq!(class_of(MAX_BLOCK + 1), None);
    }

    /// Issue 10 finding 11: `enter` looked at the gate and then counted itself, so a `fork`
    /// that saw a count of zero in between copied a count of 1 into the child, whose next fork
    /// then waited forever. Here a thread stops right after its look at the open gate, the
    /// gate closes (as `fork` closes it), and the thread resumes: it must not be counted
    /// before the gate opens again.
    #[test]
    fn finding11_closed_gate_never_counts_an_entry() {
        use std::sync::mpsc::{channel, Receiver, Sender};
        use std::sync::Mutex;
        use std::time::Duration;
        type Step = (Sender<&'static str>, Receiver<()>);
        static STEP: Mutex<Option<Step>> = Mutex::new(None);
        fn report(what: &'static str) {
            let guard = STEP.lock().unwrap();
            let (to_test, from_test) = guard.as_ref().unwrap();
            to_test.send(what).unwrap();
            from_test.recv().unwrap();
        }
        let (to_test, events) = channel();
        let (resume, from_test) = channel();
        *STEP.lock().unwrap() = Some((to_test, from_test));
        let thread = std::thread::spawn(|| {
            AFTER_CHECK.set(Some(|| report("checked")));
            AFTER_COUNT.set(Some(|| report("counted")));
            let _inside = enter();
        });
        assert_eq!(events.recv().unwrap(), "checked");
        close_gate();
        resume.send(()).unwrap();
        // A child forked now would inherit the count: the thread must wait at the gate.
        let while_closed = events.recv_timeout(Duration::from_secs(2));
        let count_while_closed = entries();
        GATE.fetch_sub(FORK_UNIT, Ordering::SeqCst);
        if while_closed.is_err() {
            // Opened: now it gets in.
            assert_eq!(events.recv().unwrap(), "counted");
        }
        resume.send(()).unwrap();
        thread.join().unwrap();
        assert!(while_closed.is_err(), "counted while the gate was closed");
        assert_eq!(count_while_closed, 0);
    }

    #[test]
    fn blocks_are_wiped_and_reused_without_installing() {
        // The allocator works on its own (install is tested in its own test binary).
        // SAFETY: every pointer is one `allocate` or `lc_realloc` just returned, used within the
        // size asked for and released once.
        unsafe {
            let p = allocate(100);
            assert!(!p.is_null());
            assert_eq!(usable_size(p), 100);
            std::ptr::write_bytes(p, 0xAB, 100);
            let q = lc_realloc(p as *mut c_void, 5000, std::ptr::null(), 0) as *mut u8;
            assert_eq!(std::slice::from_raw_parts(q, 100), &[0xAB; 100][..]);
            release(q);
            let big = allocate(MAX_BLOCK * 2);
            std::ptr::write_bytes(big, 0xCD, MAX_BLOCK * 2);
            release(big);
        }
        assert!(free_blocks_are_wiped());
    }
}
