//! The allocator's rules, on instances of its own (the process's allocator is shared with
//! every other test thread, so its shelves change under a test's feet).

use super::*;

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn fill(block: *mut u8, size: usize, byte: u8) {
    // SAFETY: the callers pass blocks of at least `size` bytes.
    unsafe { ptr::write_bytes(block, byte, size) }
}

fn all(block: *const u8, size: usize, byte: u8) -> bool {
    // SAFETY: the callers pass blocks of at least `size` initialised bytes.
    unsafe { std::slice::from_raw_parts(block, size) }
        .iter()
        .all(|&b| b == byte)
}

#[test]
fn classes_cover_over_8_up_to_32_kib_aligned_up_to_a_page() {
    assert_eq!(class_of(8192, 8), None);
    assert_eq!(class_of(8193, 1), Some(0));
    assert_eq!(class_of(12288, 16), Some(0));
    assert_eq!(class_of(12289, 16), Some(1));
    assert_eq!(class_of(16384, 1), Some(1)); // a decrypted record
    assert_eq!(class_of(16406, 1), Some(2)); // an encrypted one with its framing
    assert_eq!(class_of(32768, 4096), Some(CLASSES - 1));
    assert_eq!(class_of(32769, 8), None);
    assert_eq!(class_of(16384, 8192), None);
    for size in (SMALLEST_ABOVE + 1..=LARGEST).step_by(97) {
        let class = class_of(size, 8).unwrap();
        let block = block_layout(class);
        assert!(block.size() >= size && block.size() < size + PAGE, "{size}");
        assert_eq!(block.align(), PAGE);
    }
}

#[test]
fn class_blocks_start_on_a_page_and_others_are_the_systems() {
    let blocks = RecordBlocks::new();
    for (size, align) in [
        (8193, 1),
        (16384, 1),
        (16406, 8),
        (26000, 16),
        (32768, 4096),
    ] {
        // SAFETY: non-zero layouts; each block is freed with the layout it was asked with.
        unsafe {
            let block = blocks.alloc(layout(size, align));
            assert!(!block.is_null());
            assert_eq!(block as usize % PAGE, 0, "{size}");
            fill(block, size, 0xa5);
            blocks.dealloc(block, layout(size, align));
        }
    }
    for (size, align) in [(1, 1), (8192, 8), (32769, 8), (1 << 20, 16), (16384, 8192)] {
        // SAFETY: as above.
        unsafe {
            let block = blocks.alloc(layout(size, align));
            assert!(!block.is_null());
            assert_eq!(block as usize % align, 0);
            fill(block, size, 0x5a);
            blocks.dealloc(block, layout(size, align));
        }
    }
    // Only the class blocks were kept, one per class used.
    assert_eq!(blocks.kept_counts(), [1, 1, 1, 0, 1, 1]);
}

#[test]
fn the_newest_block_freed_is_handed_out_first_and_at_most_kept_stay() {
    let blocks = RecordBlocks::new();
    let record = layout(16384, 1);
    // SAFETY: non-zero layouts; every block is freed once, with the layout it was asked with.
    unsafe {
        let many: Vec<*mut u8> = (0..KEPT + 5).map(|_| blocks.alloc(record)).collect();
        for &block in &many {
            blocks.dealloc(block, record);
        }
        assert_eq!(
            blocks.kept_counts()[1],
            KEPT,
            "the rest went back to the system"
        );
        // Last in, first out: the block freed last of those kept comes back first.
        assert_eq!(blocks.alloc(record), many[KEPT - 1]);
        assert_eq!(
            blocks.alloc(layout(12289, 8)),
            many[KEPT - 2],
            "same class, other size"
        );
        assert_eq!(blocks.kept_counts()[1], KEPT - 2);
        blocks.dealloc(many[KEPT - 1], record);
        blocks.dealloc(many[KEPT - 2], layout(12289, 8));
        while blocks.kept_counts()[1] > 0 {
            let block = blocks.alloc(record);
            System.dealloc(block, block_layout(1));
        }
    }
}

#[test]
fn a_busy_shelf_is_passed_by_not_waited_for() {
    let blocks = RecordBlocks::new();
    let record = layout(20000, 8);
    // SAFETY: as above.
    unsafe {
        let first = blocks.alloc(record);
        blocks.dealloc(first, record);
        assert_eq!(blocks.kept_counts()[2], 1);
        blocks.shelves[2].busy.store(true, Ordering::Relaxed);
        let other = blocks.alloc(record); // served by the system: the kept one is not reachable
        assert!(!other.is_null() && other != first);
        assert_eq!(other as usize % PAGE, 0);
        blocks.dealloc(other, record); // freed to the system, not kept
        blocks.shelves[2].busy.store(false, Ordering::Relaxed);
        assert_eq!(blocks.kept_counts()[2], 1);
        assert_eq!(blocks.alloc(record), first);
        blocks.dealloc(first, record);
    }
}

#[test]
fn realloc_keeps_the_contents_across_classes_and_to_and_from_the_system() {
    let blocks = RecordBlocks::new();
    // A Vec's life in rustls's receive buffer: 4 KiB, grown through the classes and past
    // them, shrunk back; and one that stays in a class.
    let sizes = [
        4096, 8192, 9000, 16384, 16406, 20000, 20480, 32768, 40000, 12000, 4096, 100,
    ];
    // SAFETY: non-zero layouts; each realloc's block is used with the size it was given.
    unsafe {
        let mut size = sizes[0];
        let mut block = blocks.alloc(layout(size, 1));
        fill(block, size, 1);
        for (step, &new_size) in sizes.iter().enumerate().skip(1) {
            let moved = blocks.realloc(block, layout(size, 1), new_size);
            assert!(!moved.is_null());
            assert!(
                all(moved, size.min(new_size), step as u8),
                "{size} -> {new_size}"
            );
            if class_of(new_size, 1).is_some() {
                assert_eq!(moved as usize % PAGE, 0, "{new_size}");
            }
            if class_of(size, 1).is_some() && class_of(size, 1) == class_of(new_size, 1) {
                assert_eq!(moved, block, "{size} -> {new_size} stays in its block");
            }
            fill(moved, new_size, step as u8 + 1);
            block = moved;
            size = new_size;
        }
        blocks.dealloc(block, layout(size, 1));
    }
}

#[test]
fn zeroed_blocks_are_zero_also_when_reused() {
    let blocks = RecordBlocks::new();
    // SAFETY: as above.
    unsafe {
        let dirty = blocks.alloc(layout(16384, 1));
        fill(dirty, 16384, 0xff);
        blocks.dealloc(dirty, layout(16384, 1));
        let zeroed = blocks.alloc_zeroed(layout(16000, 1));
        assert_eq!(zeroed, dirty, "the kept block is reused");
        assert!(all(zeroed, 16000, 0));
        blocks.dealloc(zeroed, layout(16000, 1));
        let big = blocks.alloc_zeroed(layout(1 << 20, 8));
        assert!(all(big, 1 << 20, 0));
        blocks.dealloc(big, layout(1 << 20, 8));
    }
}

#[test]
fn threads_share_the_shelves_without_losing_or_doubling_a_block() {
    static BLOCKS: RecordBlocks = RecordBlocks::new();
    let blocks = &BLOCKS;
    let workers: Vec<_> = (0..4u8)
        .map(|tag| {
            std::thread::spawn(move || {
                let record = layout(16384, 1);
                for _ in 0..2000 {
                    // SAFETY: as above; each block is this thread's until it frees it.
                    unsafe {
                        let held: Vec<*mut u8> = (0..3).map(|_| blocks.alloc(record)).collect();
                        for &block in &held {
                            fill(block, 16384, tag);
                        }
                        for &block in &held {
                            assert!(all(block, 16384, tag), "a block was handed out twice");
                            blocks.dealloc(block, record);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert!(blocks.kept_counts()[1] <= KEPT);
}

#[test]
fn it_is_the_global_allocator_of_the_core() {
    // rustls's record buffers are plain Vecs: they get page-aligned blocks only if this is the
    // allocator every Rust allocation of the core goes through.
    for size in [16384, 16406, 20000] {
        let record: Vec<u8> = Vec::with_capacity(size);
        assert_eq!(record.as_ptr() as usize % PAGE, 0, "{size}");
    }
}
