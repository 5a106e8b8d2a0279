//! The vector step of the writer's UCS-4 -> UTF-8 encoding (`json_string::escape_ucs4_behind`):
//! runs of code points that need neither an escape nor a refusal, 8 at a time, with AVX2 where
//! the CPU has it (found at run time, as `memchr` and `base64-simd` do: the wheel is built for
//! baseline x86-64). Each block is checked, encoded to UTF-8 (1 to 4 bytes per code point, all
//! lanes at once) and packed with a byte shuffle per half block, from a table built at compile
//! time. Every other machine, and every block that needs care, takes the portable scalar steps
//! of `json_string`; the text paths' `unsafe` is confined to this module.

/// Whether the vector step runs on this machine.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Encode the native-endian UCS-4 code points of `buf[r..end]`, 8 at a time, as UTF-8 written
/// from `buf[o]` on (`o <= r`: behind them, as `escape_ucs4_behind` writes), up to the first
/// block of 8 holding a code point JSON escapes (a control character, '"', '\\') or a surrogate,
/// or fewer than 8 left; where reading and writing are then. Nothing is done without the vector
/// step (`available()` false) or with arguments outside those bounds.
pub fn clean_run(buf: &mut [u8], r: usize, o: usize, end: usize) -> (usize, usize) {
    if o > r || r > end || end > buf.len() {
        return (r, o);
    }
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX2 is present (checked just above); `o <= r <= end <= buf.len()`, the
        // bounds `avx2::clean_run` requires.
        return unsafe { avx2::clean_run(buf.as_mut_ptr(), r, o, end) };
    }
    (r, o)
}

/// The byte shuffle that packs 4 lanes of UTF-8 (a code point's bytes at the start of its 4-byte
/// lane) of the given lengths, for every combination: index `l0 - 1 | (l1 - 1) << 2 | ...`,
/// the 16 shuffle bytes and, in a table beside it, the packed length.
#[cfg(any(target_arch = "x86_64", test))]
const fn pack_tables() -> ([[u8; 16]; 256], [u8; 256]) {
    let mut shuffles = [[0x80u8; 16]; 256];
    let mut lengths = [0u8; 256];
    let mut index = 0;
    while index < 256 {
        let mut at = 0;
        let mut lane = 0;
        while lane < 4 {
            let len = ((index >> (2 * lane)) & 3) + 1;
            let mut k = 0;
            while k < len {
                shuffles[index][at] = (4 * lane + k) as u8;
                at += 1;
                k += 1;
            }
            lane += 1;
        }
        lengths[index] = at as u8;
        index += 1;
    }
    (shuffles, lengths)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    const TABLES: ([[u8; 16]; 256], [u8; 256]) = super::pack_tables();
    static SHUFFLES: [[u8; 16]; 256] = TABLES.0;
    static LENGTHS: [u8; 256] = TABLES.1;
    /// `super::clean_run` on AVX2.
    ///
    /// # Safety
    /// The CPU has AVX2; `base` points to a buffer of at least `end` bytes, and `o <= r <= end`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn clean_run(
        base: *mut u8,
        mut r: usize,
        mut o: usize,
        end: usize,
    ) -> (usize, usize) {
        let splat = |x: u32| _mm256_set1_epi32(x as i32);
        while r + 32 <= end {
            // SAFETY: `r + 32 <= end`: the 32 bytes lie within the buffer (unaligned load).
            let codes = unsafe { _mm256_loadu_si256(base.add(r).cast()) };
            // Code points are below 0x110000, so the signed compares order them.
            let control = _mm256_cmpgt_epi32(splat(0x20), codes);
            let quote = _mm256_cmpeq_epi32(codes, splat(u32::from(b'"')));
            let backslash = _mm256_cmpeq_epi32(codes, splat(u32::from(b'\\')));
            let surrogate =
                _mm256_cmpeq_epi32(_mm256_and_si256(codes, splat(0xFFFF_F800)), splat(0xD800));
            let careful = _mm256_or_si256(
                _mm256_or_si256(control, quote),
                _mm256_or_si256(backslash, surrogate),
            );
            if _mm256_movemask_epi8(careful) != 0 {
                break;
            }
            let two = _mm256_cmpgt_epi32(codes, splat(0x7F));
            let mask = |lanes: __m256i| _mm256_movemask_ps(_mm256_castsi256_ps(lanes)) as usize;
            let m2 = mask(two);
            if m2 == 0 {
                // ASCII: each lane's low byte, gathered into the low 8 bytes.
                #[rustfmt::skip]
                let lows = _mm256_setr_epi8(
                    0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                    0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                );
                let lows = _mm256_shuffle_epi8(codes, lows);
                let lows =
                    _mm256_permutevar8x32_epi32(lows, _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
                // SAFETY: 8 bytes from `o <= r`, within the block just loaded.
                unsafe { _mm_storel_epi64(base.add(o).cast(), _mm256_castsi256_si128(lows)) };
                o += 8;
                r += 32;
                continue;
            }
            let three = _mm256_cmpgt_epi32(codes, splat(0x7FF));
            let four = _mm256_cmpgt_epi32(codes, splat(0xFFFF));
            // Each code point's UTF-8 length less one (0 to 3; the compares are all ones).
            let extra = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_add_epi32(_mm256_add_epi32(two, three), four),
            );
            // Its 6-bit groups, highest in the lowest byte: the UTF-8 of a code point of
            // length n is the n highest bytes, shifted down, with the length's marker bits
            // (the lead byte's prefix, 0x80 on each continuation byte). ASCII keeps itself.
            let groups = _mm256_or_si256(
                _mm256_or_si256(
                    _mm256_slli_epi32(_mm256_and_si256(codes, splat(0x3F)), 24),
                    _mm256_slli_epi32(_mm256_and_si256(codes, splat(0xFC0)), 10),
                ),
                _mm256_or_si256(
                    _mm256_srli_epi32(_mm256_and_si256(codes, splat(0x3_F000)), 4),
                    _mm256_srli_epi32(codes, 18),
                ),
            );
            let down = _mm256_sub_epi32(splat(24), _mm256_slli_epi32(extra, 3));
            let markers =
                _mm256_setr_epi32(0, 0x80C0, 0x0080_80E0, 0x8080_80F0_u32 as i32, 0, 0, 0, 0);
            let utf8 = _mm256_or_si256(
                _mm256_srlv_epi32(groups, down),
                _mm256_permutevar8x32_epi32(markers, extra),
            );
            let utf8 = _mm256_blendv_epi8(codes, utf8, two);
            // The table index of each half: its 4 lanes' `extra`, 2 bits each, lane 0 lowest.
            // Their low bytes gathered into a word per half, which a multiply sums, each
            // shifted into its place, in its top byte (no partial sum carries into it).
            #[rustfmt::skip]
            let lows = _mm256_setr_epi8(
                0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
            );
            let words = _mm256_permutevar8x32_epi32(
                _mm256_shuffle_epi8(extra, lows),
                _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0),
            );
            let words = _mm_cvtsi128_si64(_mm256_castsi256_si128(words)) as u64;
            for (half, word) in [
                (_mm256_castsi256_si128(utf8), words as u32),
                (_mm256_extracti128_si256::<1>(utf8), (words >> 32) as u32),
            ] {
                let index = (word.wrapping_mul(0x0104_1040) >> 24) as usize;
                let (shuffle, len) = (&SHUFFLES[index & 0xFF], LENGTHS[index & 0xFF]);
                // SAFETY: a table row of 16 bytes (unaligned load).
                let shuffle = unsafe { _mm_loadu_si128(shuffle.as_ptr().cast()) };
                // SAFETY: 16 bytes from `o`: the first half is stored at `o <= r`, the second
                // at most 16 bytes further, so both end by `r + 32 <= end`, within the buffer,
                // and overwrite only code points already loaded.
                unsafe { _mm_storeu_si128(base.add(o).cast(), _mm_shuffle_epi8(half, shuffle)) };
                o += usize::from(len);
            }
            r += 32;
        }
        (r, o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pack_table_takes_each_lane_s_leading_bytes_in_order() {
        let (shuffles, lengths) = pack_tables();
        for (index, (shuffle, &len)) in shuffles.iter().zip(&lengths).enumerate() {
            let lens: Vec<usize> = (0..4).map(|lane| ((index >> (2 * lane)) & 3) + 1).collect();
            assert_eq!(usize::from(len), lens.iter().sum::<usize>());
            let want: Vec<u8> = lens
                .iter()
                .enumerate()
                .flat_map(|(lane, &l)| (0..l).map(move |k| (4 * lane + k) as u8))
                .collect();
            assert_eq!(&shuffle[..want.len()], &want[..]);
        }
    }

    #[test]
    fn out_of_bounds_arguments_do_nothing() {
        let mut buf = vec![0x41u8; 64];
        assert_eq!(clean_run(&mut buf, 0, 4, 64), (0, 4));
        assert_eq!(clean_run(&mut buf, 40, 0, 32), (40, 0));
        assert_eq!(clean_run(&mut buf, 0, 0, 65), (0, 0));
    }
}
