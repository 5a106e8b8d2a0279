//! The core's Rust allocator: the system allocator, except that blocks of TLS record sizes
//! start on a page boundary and the last ones freed are handed out again.
//!
//! rustls copies every record it decrypts out of its receive buffer into a `Vec` of its own
//! (16 KiB of plaintext, from 5 bytes past the buffer's start, behind the record header), and
//! the destination's address decides what that copy costs. When the destination lies 1-15
//! bytes past the source modulo 4 KiB, every load of the copy waits on the store just made to
//! the same page offset (4K aliasing): 16 KiB take 5 us instead of 0.2 (3.5 GB/s against
//! 70-100 measured here). With glibc placing both buffers wherever a free chunk fits, that
//! happened or not from run to run: that one copy took 6-7% of the client's CPU for 1 MiB of
//! non-ASCII text (`perf`, `take_received_plaintext`), 0.5-0.7% when it did not.
//!
//! So an allocation over 8 KiB and up to 32 KiB (alignment up to a page) gets a block of its
//! 4 KiB size class that starts on a page: rustls's receive buffer (from 16 KiB on, as it is
//! whenever it holds a whole record) and the record's copy then sit 5 bytes apart the harmless
//! way (the destination behind). The last `KEPT` blocks freed of each class are kept and handed
//! out again, newest first (an aligned allocation costs glibc more than a plain one, and ~270
//! of them come and go for a megabyte each way); a class another thread is using is passed by
//! and the system allocator serves the call, so no allocation ever waits for another.
//!
//! This serves only the extension's own Rust code (rustls, the core's scratch buffers):
//! Python, aws-lc (the locked heap, `lc_heap`) and the rest of the process keep their
//! allocators. A kept block holds what it held when freed, as a free chunk of glibc does:
//! TLS records and public data; secrets live in `LockedBuf`s and the locked heap, wiped.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Size classes are this wide, and class blocks start on a boundary of this size.
const PAGE: usize = 4096;
/// Allocations over this size (and up to `LARGEST`) get class blocks.
const SMALLEST_ABOVE: usize = 8 * 1024;
/// The largest class block.
const LARGEST: usize = 32 * 1024;
/// The classes: blocks of 12, 16, 20, 24, 28 and 32 KiB.
pub const CLASSES: usize = (LARGEST - SMALLEST_ABOVE) / PAGE;
/// Blocks kept per class: a 256 KiB send stages 16 records before they are taken out.
pub const KEPT: usize = 16;

/// The class of an allocation of `size` bytes aligned to `align`, if it has one.
fn class_of(size: usize, align: usize) -> Option<usize> {
    if align > PAGE || size <= SMALLEST_ABOVE || size > LARGEST {
        return None;
    }
    Some((size - SMALLEST_ABOVE - 1) / PAGE)
}

/// The layout every block of `class` is allocated with.
fn block_layout(class: usize) -> Layout {
    let size = SMALLEST_ABOVE + (class + 1) * PAGE;
    // SAFETY: a non-zero size far below isize::MAX, and a power-of-two alignment.
    unsafe { Layout::from_size_align_unchecked(size, PAGE) }
}

/// The kept blocks of one class, newest last.
struct Kept {
    count: usize,
    blocks: [*mut u8; KEPT],
}

/// One class's kept blocks under a lock that is tried, never waited for.
struct Shelf {
    busy: AtomicBool,
    kept: UnsafeCell<Kept>,
}

// SAFETY: `kept` is only touched by the thread that set `busy` (acquire, then release), and
// the blocks are the system allocator's, which any thread may use and free.
unsafe impl Sync for Shelf {}

impl Shelf {
    const fn new() -> Self {
        Shelf {
            busy: AtomicBool::new(false),
            kept: UnsafeCell::new(Kept {
                count: 0,
                blocks: [ptr::null_mut(); KEPT],
            }),
        }
    }

    /// `f` on the kept blocks, or `None` at once if another thread holds them.
    fn with<R>(&self, f: impl FnOnce(&mut Kept) -> R) -> Option<R> {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        // SAFETY: this thread set `busy`, so no other thread touches `kept` until it is reset.
        let result = f(unsafe { &mut *self.kept.get() });
        self.busy.store(false, Ordering::Release);
        Some(result)
    }

    /// The newest kept block, or null (none kept, or the shelf is busy).
    fn take(&self) -> *mut u8 {
        self.with(|kept| {
            if kept.count == 0 {
                return ptr::null_mut();
            }
            kept.count -= 1;
            kept.blocks[kept.count]
        })
        .unwrap_or(ptr::null_mut())
    }

    /// Keep `block`; false when the shelf is full or busy (the caller frees it).
    fn keep(&self, block: *mut u8) -> bool {
        self.with(|kept| {
            if kept.count == KEPT {
                return false;
            }
            kept.blocks[kept.count] = block;
            kept.count += 1;
            true
        })
        .unwrap_or(false)
    }
}

/// The allocator: the system's, with page-aligned, recycled blocks for record sizes.
pub struct RecordBlocks {
    shelves: [Shelf; CLASSES],
}

impl RecordBlocks {
    /// An allocator with nothing kept.
    pub const fn new() -> Self {
        RecordBlocks {
            shelves: [const { Shelf::new() }; CLASSES],
        }
    }

    /// Blocks kept now, per class (a class busy at this moment reads as 0).
    pub fn kept_counts(&self) -> [usize; CLASSES] {
        let mut counts = [0; CLASSES];
        for (count, shelf) in counts.iter_mut().zip(&self.shelves) {
            *count = shelf.with(|kept| kept.count).unwrap_or(0);
        }
        counts
    }
}

impl Default for RecordBlocks {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out comes from `System` with at least the size and alignment
// asked for (a class block has its class's size, the largest the class serves, and a page's
// alignment, the largest it takes), and is given back to `System` with the layout it was
// allocated with: `class_of` maps the caller's layout to the same class on the way out as on
// the way in (`realloc` moves a block whose class would change).
unsafe impl GlobalAlloc for RecordBlocks {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout.size(), layout.align()) else {
            // SAFETY: the caller's promise (a non-zero size) carries over.
            return unsafe { System.alloc(layout) };
        };
        let kept = self.shelves[class].take();
        if !kept.is_null() {
            return kept;
        }
        // SAFETY: a valid, non-zero layout.
        unsafe { System.alloc(block_layout(class)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class_of(layout.size(), layout.align()).is_none() {
            // SAFETY: the caller's promise carries over (calloc skips fresh zero pages).
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: as `alloc`.
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            // SAFETY: the block has at least `layout.size()` writable bytes.
            unsafe { ptr::write_bytes(block, 0, layout.size()) };
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout.size(), layout.align()) else {
            // SAFETY: allocated by `System` with this very layout.
            return unsafe { System.dealloc(block, layout) };
        };
        if !self.shelves[class].keep(block) {
            // SAFETY: every block of this class was allocated with its class layout.
            unsafe { System.dealloc(block, block_layout(class)) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_class = class_of(layout.size(), layout.align());
        let new_class = class_of(new_size, layout.align());
        if old_class.is_none() && new_class.is_none() {
            // SAFETY: `block` is System's, allocated with `layout`; the caller's promises.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        if old_class == new_class {
            return block; // its class's size covers the new size as well
        }
        // SAFETY: the caller promises `new_size` makes a valid layout with this alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as `alloc`.
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: two distinct blocks, each with at least the smaller size; `block` was
            // allocated here with `layout`.
            unsafe {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: RecordBlocks = RecordBlocks::new();

/// In a fork child: a shelf another thread was using at the fork is free again. That thread
/// does not exist here; at worst the block it was moving is forgotten, never handed out twice.
#[cfg(unix)]
pub(crate) fn after_fork_child() {
    for shelf in &ALLOCATOR.shelves {
        shelf.busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
#[path = "record_blocks_tests.rs"]
mod tests;
