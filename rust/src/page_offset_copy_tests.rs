use super::*;

/// A page-aligned source of `len` patterned bytes and a destination `ahead` bytes past it in
/// page offset, with guard bytes around it.
struct Placed {
    src: Vec<u8>,
    src_at: usize,
    dst: Vec<u8>,
    dst_at: usize,
    len: usize,
}

impl Placed {
    fn new(len: usize, ahead: usize, src_skew: usize) -> Self {
        let mut src = vec![0u8; len + 2 * PAGE];
        let src_at = (PAGE - src.as_ptr() as usize % PAGE) % PAGE + src_skew;
        for (k, byte) in src[src_at..src_at + len].iter_mut().enumerate() {
            *byte = (k * 7 + k / 251) as u8;
        }
        let dst = vec![0xEEu8; len + 3 * PAGE];
        let want = (src[src_at..].as_ptr() as usize + ahead) % PAGE;
        let dst_at = PAGE + (want + PAGE - dst.as_ptr() as usize % PAGE) % PAGE;
        Placed {
            src,
            src_at,
            dst,
            dst_at,
            len,
        }
    }

    fn copy(&mut self) -> Route {
        let (src, len) = (&self.src[self.src_at..self.src_at + self.len], self.len);
        copy(src, &mut self.dst[self.dst_at..self.dst_at + len])
    }

    fn check(&self) {
        let src = &self.src[self.src_at..self.src_at + self.len];
        assert_eq!(&self.dst[self.dst_at..self.dst_at + self.len], src);
        assert!(self.dst[..self.dst_at].iter().all(|&b| b == 0xEE));
        assert!(self.dst[self.dst_at + self.len..]
            .iter()
            .all(|&b| b == 0xEE));
    }
}

#[test]
fn the_slow_band_is_a_destination_1_to_15_bytes_past_the_source_in_page_offset() {
    let at = |src: usize, dst: usize| in_slow_band(src as *const u8, dst as *const u8);
    for base in [0usize, 5, 4091, 3 * PAGE + 100] {
        assert!(!at(base, base));
        for ahead in 1..16 {
            assert!(at(base, base + ahead), "{base} {ahead}");
            assert!(at(base, base + ahead + 7 * PAGE), "{base} {ahead}");
            assert!(!at(base + ahead, base), "{base} {ahead}: behind the source");
        }
        for ahead in [16, 24, 64, PAGE - 1, PAGE - 15] {
            assert!(!at(base, base + ahead), "{base} {ahead}");
        }
    }
}

#[test]
fn every_relative_offset_copies_exactly_and_the_band_goes_through_the_scratch() {
    let lens = [
        0,
        1,
        255,
        256,
        300,
        CHUNK - 1,
        CHUNK,
        CHUNK + 5,
        3 * CHUNK + 77,
        16_384,
        40_000,
    ];
    for len in lens {
        for ahead in (0..80).chain([PAGE - 20, PAGE - 1]) {
            for skew in [0, 5] {
                let mut placed = Placed::new(len, ahead, skew);
                let route = placed.copy();
                placed.check();
                let band = (1..16).contains(&ahead) && len >= BOUNCE_MIN;
                let want = if band { Route::Bounced } else { Route::Direct };
                assert_eq!(route, want, "len {len} ahead {ahead} skew {skew}");
            }
        }
    }
}

#[test]
fn the_scratch_slot_lies_outside_the_band_from_both_ends() {
    // Its page offset is the source's plus LEAD; the destination lies 1-15 past the source.
    for ahead in 1..16 {
        assert!(!in_slow_band(std::ptr::null(), LEAD as *const u8));
        assert!(
            !in_slow_band(LEAD as *const u8, ahead as *const u8),
            "{ahead}"
        );
    }
}

#[test]
fn unequal_lengths_copy_what_fits() {
    let src: Vec<u8> = (0..5000u32).map(|k| k as u8).collect();
    let mut short = vec![0u8; 3000];
    copy(&src, &mut short);
    assert_eq!(short, src[..3000]);
    let mut long = vec![9u8; 6000];
    copy(&src, &mut long);
    assert_eq!(long[..5000], src[..]);
    assert!(long[5000..].iter().all(|&b| b == 9));
}

#[test]
fn a_busy_scratch_falls_back_to_a_direct_copy() {
    SCRATCH.with(|scratch| {
        let _held = scratch.borrow_mut();
        let mut placed = Placed::new(4096, 8, 0);
        assert_eq!(placed.copy(), Route::Direct);
        placed.check();
    });
}

#[test]
fn a_source_reads_its_bytes_in_order_into_buffers_of_any_size() {
    use std::io::Read;
    let data: Vec<u8> = (0..20_000u32).map(|k| (k % 253) as u8).collect();
    let mut source = Source(&data);
    let mut got = Vec::new();
    for size in [0usize, 1, 300, 4096, 17, 40_000].iter().cycle().take(40) {
        let mut buf = vec![0u8; *size];
        let n = source.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        if got.len() == data.len() {
            break;
        }
    }
    assert_eq!(got, data);
    assert_eq!(source.read(&mut [0u8; 8]).unwrap(), 0);
}

#[test]
#[ignore = "timing, by hand"]
fn time_copies_in_and_out_of_the_band() {
    // `cargo test --release --no-default-features --lib page_offset_copy -- --ignored --nocapture`
    const RECORD: usize = 16 * 1024;
    for ahead in [0, 8, 24] {
        let mut placed = Placed::new(RECORD, ahead, 0);
        let direct = crate::timing::best_of(200, &mut || {
            let (from, at) = (placed.src_at, placed.dst_at);
            let src = &placed.src[from..from + RECORD];
            placed.dst[at..at + RECORD].copy_from_slice(std::hint::black_box(src));
        });
        let ours = crate::timing::best_of(200, &mut || {
            std::hint::black_box(placed.copy());
        });
        println!("16 KiB, destination {ahead} bytes ahead: memcpy {direct:?}, copy {ours:?}");
    }
}
