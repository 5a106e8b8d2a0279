//! A locked, wiped heap for aws-lc's own allocations.
//!
//! aws-lc keeps the RSA private key (its big numbers, Montgomery and blinding state), the AES-GCM
//! key schedule and every OAEP scratch buffer in memory it gets from `OPENSSL_malloc`. By default
//! that is the ordinary heap: wiped on free (aws-lc cleanses in `OPENSSL_free`), but swappable and
//! included in core dumps for as long as it lives, which for a client key pair is the whole
//! session. `install` routes those allocations here instead (`CRYPTO_set_mem_functions`):
//!
//! - blocks up to `MAX_BLOCK` bytes come from slabs that are `mlock`ed (within `MAX_LOCKED_BYTES`,
//!   so LockedBufs keep most of RLIMIT_MEMLOCK) and `MADV_DONTDUMP`; larger ones from `malloc`;
//! - every block is zeroed when freed, whatever its origin.
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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

use zeroize::Zeroize;

const MAGIC: u32 = 0x4e4c_434b; // "NLCK"
const HEADER: usize = 16;
const KIND_POOL: u8 = 1;
const KIND_SYSTEM: u8 = 2;
/// Smallest block: 32 bytes (2^5), header included.
const MIN_SHIFT: usize = 5;
/// Largest pooled block: 32 KiB (2^15), header included.
const MAX_SHIFT: usize = 15;
const CLASSES: usize = MAX_SHIFT - MIN_SHIFT + 1;
pub const MAX_BLOCK: usize = 1 << MAX_SHIFT;
const SLAB_BYTES: usize = 128 * 1024;
/// Locked memory the pool may take; beyond it slabs are dump-excluded and wiped, not locked.
pub const MAX_LOCKED_BYTES: usize = 1024 * 1024;
/// aws-lc's default allocator stores the size in the 8 bytes before the pointer.
const FOREIGN_PREFIX: usize = 8;

static INSTALLED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
static LOCKED_BYTES: AtomicUsize = AtomicUsize::new(0);
static SLAB_TOTAL: AtomicUsize = AtomicUsize::new(0);
static LOCK_FAILURES: AtomicUsize = AtomicUsize::new(0);
static LIVE_POOL_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static LIVE_SYSTEM_BLOCKS: AtomicUsize = AtomicUsize::new(0);

/// Free lists (one per size class; the next pointer lives in a free block's first 8 bytes) and
/// the unused tail of the current slab.
struct Pool {
    free: [*mut u8; CLASSES],
    cursor: *mut u8,
    end: *mut u8,
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
fn entries() -> usize {
    GATE.load(Ordering::SeqCst) & ENTRIES
}

/// Close the gate: no new entry from now on, and return once every thread inside has left.
fn close_gate() {
    GATE.fetch_add(FORK_UNIT, Ordering::SeqCst);
    while entries() != 0 {
        std::thread::yield_now();
    }
}

/// `fork` prepare handler: let every thread inside aws-lc finish, then hold the pool.
#[cfg(unix)]
extern "C" fn before_fork() {
    close_gate();
    POOL.acquire();
}

/// `fork` parent handler: this fork is done (another thread's may still be pending).
#[cfg(unix)]
extern "C" fn after_fork_parent() {
    POOL.release();
    GATE.fetch_sub(FORK_UNIT, Ordering::SeqCst);
}

/// `fork` child handler: the child has one thread, this one, outside aws-lc.
#[cfg(unix)]
extern "C" fn after_fork_child() {
    POOL.release();
    GATE.store(0, Ordering::SeqCst);
}

/// What the pool holds right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub installed: bool,
    pub locked_bytes: usize,
    pub slab_bytes: usize,
    pub lock_failures: usize,
    pub live_pool_blocks: usize,
    pub live_system_blocks: usize,
}

pub fn stats() -> Stats {
    Stats {
        installed: INSTALLED.load(Ordering::SeqCst),
        locked_bytes: LOCKED_BYTES.load(Ordering::SeqCst),
        slab_bytes: SLAB_TOTAL.load(Ordering::SeqCst),
        lock_failures: LOCK_FAILURES.load(Ordering::SeqCst),
        live_pool_blocks: LIVE_POOL_BLOCKS.load(Ordering::SeqCst),
        live_system_blocks: LIVE_SYSTEM_BLOCKS.load(Ordering::SeqCst),
    }
}

/// Route aws-lc's allocations through this heap and make `fork` wait for threads inside
/// aws-lc (`enter`). Returns whether the heap is in place (false on platforms without
/// mmap/mlock, or if aws-lc already had custom memory functions).
pub fn install() -> bool {
    #[cfg(unix)]
    INSTALL.call_once(|| {
        // SAFETY: the three callbacks follow aws-lc's malloc/realloc/free contracts.
        let ok = unsafe {
            aws_lc_sys::CRYPTO_set_mem_functions(Some(lc_malloc), Some(lc_realloc), Some(lc_free))
        };
        // SAFETY: plain functions without captured state, valid for the process lifetime.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_parent),
                Some(after_fork_child),
            )
        };
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

#[cfg(unix)]
unsafe fn new_slab() -> Option<(*mut u8, *mut u8)> {
    let p = libc::mmap(
        std::ptr::null_mut(),
        SLAB_BYTES,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if p == libc::MAP_FAILED {
        return None;
    }
    #[cfg(target_os = "linux")]
    libc::madvise(p, SLAB_BYTES, libc::MADV_DONTDUMP);
    let within_budget = LOCKED_BYTES.load(Ordering::SeqCst) + SLAB_BYTES <= MAX_LOCKED_BYTES;
    if within_budget && libc::mlock(p, SLAB_BYTES) == 0 {
        LOCKED_BYTES.fetch_add(SLAB_BYTES, Ordering::SeqCst);
    } else {
        LOCK_FAILURES.fetch_add(1, Ordering::SeqCst);
    }
    SLAB_TOTAL.fetch_add(SLAB_BYTES, Ordering::SeqCst);
    let start = p as *mut u8;
    Some((start, start.add(SLAB_BYTES)))
}

#[cfg(not(unix))]
unsafe fn new_slab() -> Option<(*mut u8, *mut u8)> {
    None
}

unsafe fn write_header(block: *mut u8, kind: u8, class: u8, size: usize) {
    let h = block;
    (h as *mut u32).write_unaligned(MAGIC);
    h.add(4).write(kind);
    h.add(5).write(class);
    (h.add(8) as *mut u64).write_unaligned(size as u64);
}

unsafe fn allocate(size: usize) -> *mut u8 {
    let Some(total) = size.checked_add(HEADER) else {
        return std::ptr::null_mut();
    };
    if let Some(class) = class_of(total) {
        let block_size = 1usize << (class + MIN_SHIFT);
        let mut pool = lock_pool();
        let mut block = pool.free[class];
        if !block.is_null() {
            pool.free[class] = (block as *mut *mut u8).read();
            (block as *mut *mut u8).write(std::ptr::null_mut());
        } else {
            if pool.cursor.is_null() || (pool.end as usize) - (pool.cursor as usize) < block_size {
                if let Some((start, end)) = new_slab() {
                    pool.cursor = start;
                    pool.end = end;
                }
            }
            if !pool.cursor.is_null() && (pool.end as usize) - (pool.cursor as usize) >= block_size
            {
                block = pool.cursor;
                pool.cursor = pool.cursor.add(block_size);
            }
        }
        drop(pool);
        if !block.is_null() {
            write_header(block, KIND_POOL, class as u8, size);
            LIVE_POOL_BLOCKS.fetch_add(1, Ordering::SeqCst);
            return block.add(HEADER);
        }
    }
    let block = libc::malloc(total) as *mut u8;
    if block.is_null() {
        return block;
    }
    write_header(block, KIND_SYSTEM, 0, size);
    LIVE_SYSTEM_BLOCKS.fetch_add(1, Ordering::SeqCst);
    block.add(HEADER)
}

/// Size of the caller's part of the allocation at `ptr`.
unsafe fn usable_size(ptr: *mut u8) -> usize {
    let block = ptr.sub(HEADER);
    if (block as *const u32).read_unaligned() == MAGIC {
        (block.add(8) as *const u64).read_unaligned() as usize
    } else {
        (ptr.sub(FOREIGN_PREFIX) as *const usize).read_unaligned()
    }
}

unsafe fn release(ptr: *mut u8) {
    let block = ptr.sub(HEADER);
    if (block as *const u32).read_unaligned() != MAGIC {
        // Allocated by aws-lc's default allocator before `install`: size prefix + malloc.
        let start = ptr.sub(FOREIGN_PREFIX);
        let size = (start as *const usize).read_unaligned();
        std::slice::from_raw_parts_mut(start, size + FOREIGN_PREFIX).zeroize();
        libc::free(start as *mut c_void);
        return;
    }
    let kind = block.add(4).read();
    if kind == KIND_POOL {
        let class = block.add(5).read() as usize;
        let block_size = 1usize << (class + MIN_SHIFT);
        std::slice::from_raw_parts_mut(block, block_size).zeroize();
        let mut pool = lock_pool();
        (block as *mut *mut u8).write(pool.free[class]);
        pool.free[class] = block;
        LIVE_POOL_BLOCKS.fetch_sub(1, Ordering::SeqCst);
    } else {
        let size = (block.add(8) as *const u64).read_unaligned() as usize;
        std::slice::from_raw_parts_mut(block, size + HEADER).zeroize();
        libc::free(block as *mut c_void);
        LIVE_SYSTEM_BLOCKS.fetch_sub(1, Ordering::SeqCst);
    }
}

unsafe extern "C" fn lc_malloc(size: usize, _file: *const c_char, _line: c_int) -> *mut c_void {
    allocate(size) as *mut c_void
}

unsafe extern "C" fn lc_free(ptr: *mut c_void, _file: *const c_char, _line: c_int) {
    if !ptr.is_null() {
        release(ptr as *mut u8);
    }
}

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
    let keep = usable_size(old).min(new_size);
    std::ptr::copy_nonoverlapping(old, fresh, keep);
    release(old); // wipes the old copy
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
