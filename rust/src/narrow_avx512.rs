//! Code points the escape decoder wrote (4-byte native-endian units) narrowed in place, 64 at a
//! time with AVX-512 F (found at run time), to what CPython's fastest stable-ABI `str`
//! constructors take (`pystr::from_wide`): their low byte where every one is Latin-1
//! (`vpmovdb`), their low two bytes where every one is a UTF-16 unit that is no surrogate
//! (`vpmovdw`). Whatever is left past the last whole 64 is the caller's.

/// Narrow the first `units` code points of `buf` (4-byte native-endian units, each below
/// `1 << (8 * OUT)`) in place to `OUT` bytes each (1 or 2, native-endian), from its start, 64 at
/// a time; how many it narrowed (a multiple of 64, 0 without AVX-512 F).
pub fn narrow_code_points<const OUT: usize>(buf: &mut [u8], units: usize) -> usize {
    const { assert!(OUT == 1 || OUT == 2) };
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        let whole = (units.min(buf.len() / 4) / 64) * 64;
        // SAFETY: the CPU has AVX-512 F (checked just above); `4 * whole <= buf.len()`.
        unsafe { avx512::narrow_code_points::<OUT>(buf.as_mut_ptr(), whole) };
        return whole;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (buf, units); // no vector step on this target
    0
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU has AVX-512 F; `buf` points to `4 * units` writable bytes; `units % 64 == 0`;
    /// `OUT` is 1 or 2.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn narrow_code_points<const OUT: usize>(buf: *mut u8, units: usize) {
        let mut at = 0;
        while at < units {
            // Four vectors of 16 code points read before their `64 * OUT` bytes are written at
            // `OUT * at`, which end by `4 * at` (or is the first step): nothing unread is
            // overwritten.
            // SAFETY: `4 * (at + 64) <= 4 * units`: all four loads lie in `buf` (unaligned).
            let wide: [__m512i; 4] = std::array::from_fn(|k| unsafe {
                _mm512_loadu_si512(buf.add(4 * at + 64 * k).cast())
            });
            for (k, vector) in wide.into_iter().enumerate() {
                let to = OUT * (at + 16 * k);
                // SAFETY: `to + 16 * OUT <= OUT * (at + 64) <= 4 * units`: in `buf`
                // (unaligned stores).
                unsafe {
                    if OUT == 1 {
                        _mm_storeu_si128(buf.add(to).cast(), _mm512_cvtepi32_epi8(vector));
                    } else {
                        _mm256_storeu_si256(buf.add(to).cast(), _mm512_cvtepi32_epi16(vector));
                    }
                }
            }
            at += 64;
        }
    }
}
