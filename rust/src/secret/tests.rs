use std::io::Write;

use super::mapping::{mapping_span, CANARY_SIZE};
use super::pages::{page_runs, page_span, shared_pages};
use super::*;

#[test]
fn zeroed_is_all_zero_and_exact_length() {
    for len in [1usize, 15, 16, 17, 4095, 4096, 4097, 100_000] {
        let buf = LockedBuf::zeroed(len).unwrap();
        assert_eq!(buf.len(), len);
        assert!(buf.iter().all(|&b| b == 0), "len {len}");
    }
}

#[test]
fn zero_length_buffers_work() {
    let mut a = LockedBuf::zeroed(0).unwrap();
    assert!(a.is_empty());
    assert_eq!(a.as_slice(), b"");
    a.truncate(0);
    a.extend_from_slice(b"").unwrap();
    assert!(a.is_empty());
    a.extend_from_slice(b"abc").unwrap();
    assert_eq!(a.as_slice(), b"abc");
    let b = LockedBuf::from_slice(b"").unwrap();
    assert_eq!(b.len(), 0);
    let c = LockedBuf::with_capacity(0).unwrap();
    assert_eq!(c.capacity(), 0);
}

#[test]
fn growth_keeps_content() {
    let mut buf = LockedBuf::with_capacity(4).unwrap();
    let mut expect = Vec::new();
    for i in 0..5000u32 {
        let chunk = i.to_le_bytes();
        buf.extend_from_slice(&chunk).unwrap();
        expect.extend_from_slice(&chunk);
    }
    assert_eq!(buf.as_slice(), &expect[..]);
    assert!(buf.capacity() >= expect.len());
}

#[test]
fn write_trait_appends() {
    let mut buf = LockedBuf::with_capacity(2).unwrap();
    let n = 12;
    write!(buf, "{n}-{}", 3.5).unwrap();
    buf.write_all(b"!").unwrap();
    assert_eq!(buf.as_slice(), b"12-3.5!");
}

#[test]
fn truncate_wipes_the_tail() {
    let mut buf = LockedBuf::from_slice(&[0xAA; 64]).unwrap();
    buf.truncate(10);
    assert_eq!(buf.len(), 10);
    assert_eq!(buf.as_slice(), &[0xAA; 10]);
    // The bytes past the new length are zero inside the allocation.
    // SAFETY: bytes 10..64 of the buffer's capacity (64), mapped and initialised.
    let tail = unsafe { std::slice::from_raw_parts(buf.as_ptr().add(10), 54) };
    assert!(tail.iter().all(|&b| b == 0));
    buf.truncate(100); // longer than len: no effect
    assert_eq!(buf.len(), 10);
}

#[test]
fn reserve_exact_and_mutation() {
    let mut buf = LockedBuf::zeroed(3).unwrap();
    buf.as_mut_slice().copy_from_slice(b"xyz");
    buf[0] = b'X';
    buf.reserve_exact(10).unwrap();
    assert_eq!(buf.capacity(), 13);
    assert_eq!(&buf[..], b"Xyz");
    buf.clear();
    assert!(buf.is_empty());
}

#[test]
fn debug_never_prints_content() {
    let buf = LockedBuf::from_slice(b"secret-bytes-here").unwrap();
    let text = format!("{buf:?}");
    assert!(text.contains("len: 17"));
    assert!(!text.contains("secret"));
    assert!(!text.contains("115")); // 's' as a decimal byte
}

#[test]
fn counters_track_live_buffers() {
    // Other tests run in parallel threads, so only check what this test itself holds.
    let bufs: Vec<LockedBuf> = (0..4).map(|_| LockedBuf::zeroed(100).unwrap()).collect();
    let status = memory_status();
    assert!(status.buffers_live >= 4);
    assert!(status.lock_attempts >= 4);
    if bufs.iter().all(|b| b.is_locked()) {
        assert!(status.bytes_locked >= 4 * os::page_size());
    }
    drop(bufs);
}

#[test]
fn initialise_completes_the_one_time_setup_and_is_idempotent() {
    initialise();
    assert!(initialised());
    initialise();
    assert!(initialised());
    // The throw-away allocation went back to memsec: a buffer still works and its canary
    // matches the one recorded.
    let buf = LockedBuf::from_slice(b"after initialise").unwrap();
    assert_eq!(buf.as_slice(), b"after initialise");
}

#[test]
fn pool_size_classes() {
    let page = os::page_size();
    let k = 1024;
    assert_eq!(pool::class(0), None);
    assert_eq!(pool::class(4 * k - 1), None);
    assert_eq!(pool::class(4 * k), Some(0));
    assert_eq!(pool::class(8 * k - 1), Some(0));
    assert_eq!(pool::class(8 * k), Some(1));
    assert_eq!(pool::class(64 * k), Some(4));
    assert_eq!(pool::class(128 * k - page), Some(4));
    assert_eq!(pool::class(1024 * k + page), Some(8));
    assert_eq!(pool::class(16 * 1024 * k), Some(12));
    assert_eq!(pool::class(16 * 1024 * k + page), None);
    // A mapping's span: its data and memsec's canary, in whole pages.
    assert_eq!(mapping_span(64 * k - CANARY_SIZE), 64 * k);
    assert_eq!(mapping_span(64 * k - CANARY_SIZE + 1), 64 * k + page);
    assert!(pool::limit() <= pool::MAX_BYTES);
    pool::read_lock_limit();
    match os::lock_limit() {
        Some(lock_limit) if !os::locks_past_limit() => {
            assert!(pool::limit() as u64 <= lock_limit / 2);
        }
        // Unlimited, or not binding (CAP_IPC_LOCK): the pool's own bound.
        _ => assert_eq!(pool::limit(), pool::MAX_BYTES),
    }
}

#[test]
fn pooled_buffers_are_reused_zeroed_and_guarded() {
    // An odd size no other test asks for, so that the mapping is normally ours to reuse.
    let size = 700_001;
    let pattern = random_bytes(size);
    let buf = LockedBuf::from_slice(&pattern).unwrap();
    let first = buf.as_ptr() as usize;
    let locked = buf.is_locked();
    drop(buf);
    let again = LockedBuf::with_capacity(size).unwrap();
    assert_eq!(again.capacity(), size);
    // Whatever mapping it is, every byte of it is zero, data and slack before it.
    let mapping = again.mapping.as_ref().unwrap();
    // SAFETY: the mapping's `len` data bytes, owned by `again`, which is alive.
    let whole = unsafe { std::slice::from_raw_parts(mapping.base.as_ptr(), mapping.len) };
    assert!(whole.iter().all(|&b| b == 0));
    // The data still ends at the trailing guard page.
    assert_eq!(
        again.as_ptr() as usize + size,
        mapping.base.as_ptr() as usize + mapping.len
    );
    assert!(mapping.canary_intact());
    if locked && again.as_ptr() as usize == first {
        assert!(again.is_locked());
    }
    let zeroed = LockedBuf::zeroed(size).unwrap();
    assert!(zeroed.iter().all(|&b| b == 0));
}

#[test]
fn pool_stays_within_its_bounds_and_wiped() {
    let spans = [70_000usize, 70_000, 70_000, 300_000, 1_500_000, 3_000_000];
    let bufs: Vec<LockedBuf> = spans
        .iter()
        .map(|&n| LockedBuf::from_slice(&vec![0x5A; n]).unwrap())
        .collect();
    drop(bufs);
    let (bytes, zero) = pool::audit();
    assert!(bytes <= pool::limit(), "{bytes} > {}", pool::limit());
    assert!(zero, "a pooled mapping holds non-zero bytes");
}

#[test]
fn pool_never_hands_one_mapping_to_two_threads() {
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..150usize {
                    let size = [100, 5_000, 70_000, 300_000][(i + t as usize) % 4];
                    let fill = t.wrapping_mul(31).wrapping_add(i as u8) | 1;
                    let mut held = LockedBuf::zeroed(size).unwrap();
                    assert!(held.iter().all(|&b| b == 0), "reused buffer not zero");
                    held.as_mut_slice().fill(fill);
                    std::thread::yield_now();
                    assert!(
                        held.iter().all(|&b| b == fill),
                        "buffer shared with a thread"
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (bytes, zero) = pool::audit();
    assert!(bytes <= pool::limit());
    assert!(zero);
}

#[test]
fn canary_check_sees_a_write_before_the_data() {
    let buf = LockedBuf::zeroed(70_000).unwrap();
    let mapping = buf.mapping.as_ref().unwrap();
    assert!(mapping.canary_intact());
    // SAFETY: the last canary byte, just before the data in the mapping's unprotected pages.
    let canary = unsafe { mapping.base.as_ptr().sub(1) };
    // SAFETY: as above; flipped back below before the buffer is dropped (free checks it).
    unsafe { canary.write_volatile(canary.read_volatile() ^ 0x01) };
    assert!(!mapping.canary_intact());
    // SAFETY: as above, restoring the byte.
    unsafe { canary.write_volatile(canary.read_volatile() ^ 0x01) };
    assert!(mapping.canary_intact());
}

#[test]
fn page_span_covers_whole_pages() {
    let page = os::page_size();
    assert_eq!(page_span(page * 3 + 5, 1), (page * 3, page));
    assert_eq!(page_span(page * 3 + 5, page), (page * 3, 2 * page));
    assert_eq!(page_span(page * 3, page), (page * 3, page));
}

#[test]
fn lock_pages_is_reference_counted() {
    let mut data = vec![7u8; 3 * os::page_size()];
    let addr = data.as_mut_ptr() as usize;
    let first_page = page_span(addr, 1).0;
    let holders = |p: usize| shared_pages().lock().unwrap().get(&p).map(|s| s.holders);
    // SAFETY: ranges of `data`, alive until the end of the test; each lock is paired with one
    // unlock of the same range.
    unsafe {
        let locked = lock_pages(addr, 10);
        assert_eq!(lock_pages(addr + 5, 10), locked);
        assert_eq!(holders(first_page), Some(2));
        unlock_pages(addr, 10);
        // Still held by the second holder.
        assert_eq!(holders(first_page), Some(1));
        unlock_pages(addr + 5, 10);
        assert_eq!(holders(first_page), None);
        wipe_raw(data.as_mut_ptr(), data.len());
    }
    assert!(data.iter().all(|&b| b == 0));
}

#[test]
fn page_runs_group_contiguous_pages() {
    let page = 4096;
    let pages = [page, 2 * page, 3 * page, 7 * page, 9 * page, 10 * page];
    assert_eq!(
        page_runs(&pages, page),
        vec![(page, 3 * page), (7 * page, page), (9 * page, 2 * page)]
    );
    assert!(page_runs(&[], page).is_empty());
}

/// Read this process's memory through the kernel (a file read, so reading freed memory is
/// not undefined behaviour); `None` when the range is unmapped.
#[cfg(target_os = "linux")]
fn read_own_memory(addr: usize, len: usize) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open("/proc/self/mem").ok()?;
    let mut out = vec![0u8; len];
    mem.read_exact_at(&mut out, addr as u64).ok()?;
    Some(out)
}

/// Chunks of `pattern` found at their own offsets in `memory` (other tests running in
/// parallel may reuse freed memory, but they cannot reproduce the random pattern).
#[cfg(target_os = "linux")]
fn surviving_chunks(memory: &[u8], pattern: &[u8]) -> usize {
    memory
        .chunks(32)
        .zip(pattern.chunks(32))
        .filter(|(m, p)| m == p)
        .count()
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    bytes
}

#[cfg(target_os = "linux")]
fn random_pattern(len: usize) -> Vec<u8> {
    let mut pattern = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut pattern).unwrap();
    pattern
}

#[test]
#[cfg(target_os = "linux")]
fn dropped_buffer_is_wiped() {
    let pattern = random_pattern(3 * os::page_size());
    let buf = LockedBuf::from_slice(&pattern).unwrap();
    let addr = buf.as_ptr() as usize;
    assert_eq!(read_own_memory(addr, pattern.len()).unwrap(), pattern);
    drop(buf);
    if let Some(after) = read_own_memory(addr, pattern.len()) {
        assert_eq!(surviving_chunks(&after, &pattern), 0);
    }
}

#[test]
#[cfg(target_os = "linux")]
fn pooled_buffer_is_wiped_in_place() {
    let pattern = random_pattern(200_003);
    let buf = LockedBuf::from_slice(&pattern).unwrap();
    let addr = buf.as_ptr() as usize;
    drop(buf);
    // Pooled: still mapped, and zero; freed: unmapped or wiped before the free.
    if let Some(after) = read_own_memory(addr, pattern.len()) {
        assert_eq!(surviving_chunks(&after, &pattern), 0);
    }
}

#[test]
#[cfg(target_os = "linux")]
fn buffer_is_wiped_when_a_panic_unwinds() {
    let pattern = random_pattern(3 * os::page_size());
    let buf = LockedBuf::from_slice(&pattern).unwrap();
    let addr = buf.as_ptr() as usize;
    let result = std::panic::catch_unwind(move || {
        let _owned = buf;
        panic!("unwinding through a LockedBuf");
    });
    assert!(result.is_err());
    if let Some(after) = read_own_memory(addr, pattern.len()) {
        assert_eq!(surviving_chunks(&after, &pattern), 0);
    }
}

#[test]
#[cfg(target_os = "linux")]
fn growth_wipes_the_old_buffer() {
    let pattern = random_pattern(2 * os::page_size());
    let mut buf = LockedBuf::from_slice(&pattern).unwrap();
    let old_addr = buf.as_ptr() as usize;
    buf.extend_from_slice(&[1; 64]).unwrap();
    assert_ne!(buf.as_ptr() as usize, old_addr);
    assert_eq!(&buf[..pattern.len()], &pattern[..]);
    if let Some(after) = read_own_memory(old_addr, pattern.len()) {
        assert_eq!(surviving_chunks(&after, &pattern), 0);
    }
}
