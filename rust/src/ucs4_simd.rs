//! The vector step of the writer's UCS-4 -> UTF-8 encoding (`json_string::escape_ucs4_behind`):
//! runs of code points that need neither an escape nor a refusal, 8 at a time, with AVX2 where
//! the CPU has it (found at run time, as `memchr` and `base64-simd` do: the wheel is built for
//! baseline x86-64). Each block is checked, encoded to UTF-8 (1 to 4 bytes per code point, all
//! lanes at once) and packed with a byte shuffle per half block, from a table built at compile
//! time. Where the CPU also has AVX-512 VBMI2, blocks of 16 go first, packed by one byte
//! compression, and AVX2 takes the run on from the first block of 16 that needs care. Every
//! other machine, and every block that needs care, takes the portable scalar steps of
//! `json_string`; the text paths' `unsafe` is confined to this module.

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
    clean_run_by(buf, r, o, end, wide_available())
}

/// Whether blocks of 16 go first (AVX-512 VBMI2, with POPCNT).
fn wide_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vbmi2")
            && std::arch::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `clean_run`, with blocks of 16 first (`wide`, where the CPU has them) or without: the run
/// ends at the same place either way, which the tests hold it to.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut, unused_variables))]
fn clean_run_by(
    buf: &mut [u8],
    mut r: usize,
    mut o: usize,
    end: usize,
    wide: bool,
) -> (usize, usize) {
    if o > r || r > end || end > buf.len() {
        return (r, o);
    }
    #[cfg(target_arch = "x86_64")]
    if available() {
        if wide && wide_available() {
            // SAFETY: AVX-512F, BW, VBMI2 and POPCNT are present (checked just above);
            // `o <= r <= end <= buf.len()`, the bounds `avx512::clean_run` requires, and
            // which it keeps for the call below.
            (r, o) = unsafe { avx512::clean_run(buf.as_mut_ptr(), r, o, end) };
        }
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Each byte's place in its lane (0 to 3), to compare with the lane's UTF-8 length.
    const PLACES: [u8; 64] = {
        let mut places = [0u8; 64];
        let mut k = 0;
        while k < 64 {
            places[k] = (k % 4) as u8;
            k += 1;
        }
        places
    };

    /// `super::clean_run` 16 code points a step, up to the first block of 16 that holds one
    /// JSON escapes or a surrogate, or fewer than 16 left.
    ///
    /// # Safety
    /// The CPU has AVX-512F, BW, VBMI2 and POPCNT; `base` points to a buffer of at least `end`
    /// bytes, and `o <= r <= end`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi2,popcnt")]
    pub unsafe fn clean_run(
        base: *mut u8,
        mut r: usize,
        mut o: usize,
        end: usize,
    ) -> (usize, usize) {
        let splat = |x: u32| _mm512_set1_epi32(x as i32);
        // SAFETY: the table is 64 bytes (unaligned load).
        let places = unsafe { _mm512_loadu_si512(PLACES.as_ptr().cast()) };
        let markers = _mm512_setr_epi32(
            0,
            0x80C0,
            0x0080_80E0,
            0x8080_80F0_u32 as i32,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        );
        while end - r >= 64 {
            // SAFETY: `r + 64 <= end`: the 64 bytes lie within the buffer (unaligned load).
            let codes = unsafe { _mm512_loadu_si512(base.add(r).cast()) };
            let careful = _mm512_cmplt_epu32_mask(codes, splat(0x20))
                | _mm512_cmpeq_epi32_mask(codes, splat(u32::from(b'"')))
                | _mm512_cmpeq_epi32_mask(codes, splat(u32::from(b'\\')))
                | _mm512_cmpeq_epi32_mask(
                    _mm512_and_si512(codes, splat(0xFFFF_F800)),
                    splat(0xD800),
                );
            if careful != 0 {
                break;
            }
            // Each code point's UTF-8 length less one (0 to 3), and its bytes at the start of
            // its lane: as the AVX2 step builds them (its 6-bit groups, highest in the lowest
            // byte, shifted down, with the length's marker bits; ASCII keeps itself).
            let two = _mm512_cmpgt_epu32_mask(codes, splat(0x7F));
            if two == 0 {
                // ASCII: each lane's low byte.
                // SAFETY: 16 bytes from `o <= r`, within the block just loaded.
                unsafe { _mm_storeu_si128(base.add(o).cast(), _mm512_cvtepi32_epi8(codes)) };
                o += 16;
                r += 64;
                continue;
            }
            let extra = _mm512_add_epi32(
                _mm512_add_epi32(
                    _mm512_maskz_set1_epi32(two, 1),
                    _mm512_maskz_set1_epi32(_mm512_cmpgt_epu32_mask(codes, splat(0x7FF)), 1),
                ),
                _mm512_maskz_set1_epi32(_mm512_cmpgt_epu32_mask(codes, splat(0xFFFF)), 1),
            );
            let groups = _mm512_or_si512(
                _mm512_or_si512(
                    _mm512_slli_epi32(_mm512_and_si512(codes, splat(0x3F)), 24),
                    _mm512_slli_epi32(_mm512_and_si512(codes, splat(0xFC0)), 10),
                ),
                _mm512_or_si512(
                    _mm512_srli_epi32(_mm512_and_si512(codes, splat(0x3_F000)), 4),
                    _mm512_srli_epi32(codes, 18),
                ),
            );
            let down = _mm512_sub_epi32(splat(24), _mm512_slli_epi32(extra, 3));
            let utf8 = _mm512_or_si512(
                _mm512_srlv_epi32(groups, down),
                _mm512_permutexvar_epi32(extra, markers),
            );
            let utf8 = _mm512_mask_mov_epi32(codes, two, utf8);
            // The bytes each lane's length covers, packed to the front.
            let lengths = _mm512_mullo_epi32(_mm512_add_epi32(extra, splat(1)), splat(0x0101_0101));
            let keep = _mm512_cmplt_epu8_mask(places, lengths);
            let packed = _mm512_maskz_compress_epi8(keep, utf8);
            // SAFETY: 64 bytes from `o <= r`: they end by `r + 64 <= end`, within the buffer,
            // and overwrite only code points already loaded.
            unsafe { _mm512_storeu_si512(base.add(o).cast(), packed) };
            o += keep.count_ones() as usize;
            r += 64;
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

    /// Native-endian UCS-4 of `codes`, behind `pad` bytes of filler.
    fn staged(codes: &[u32], pad: usize) -> Vec<u8> {
        let mut buf = vec![0xAA; pad];
        buf.extend(codes.iter().flat_map(|c| c.to_ne_bytes()));
        buf
    }

    #[test]
    fn blocks_of_16_end_the_run_where_blocks_of_8_do_with_the_same_bytes() {
        let kinds: [&[u32]; 6] = [
            &[0x61, 0x20, 0x7E, 0x7F],
            &[0x80, 0xE9, 0x3B5, 0x7FF],
            &[0x800, 0x6F22, 0xFFFD, 0xFFFF, 0xE000, 0xD7FF],
            &[0x1_0000, 0x1_F510, 0x10_FFFF],
            &[0x22, 0x5C, 0x0A, 0x1F, 0x00],
            &[0xD800, 0xDBFF, 0xDC00, 0xDFFF],
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for len in (0..100).chain([255, 256, 1000]) {
            for round in 0..8 {
                // Mostly clean text; a careful code point now and then (rounds 4 to 7).
                let codes: Vec<u32> = (0..len)
                    .map(|_| {
                        let kind = if round >= 4 && next(40) == 0 {
                            4 + next(2)
                        } else {
                            next(4)
                        };
                        kinds[kind][next(kinds[kind].len())]
                    })
                    .collect();
                for pad in [0, 4, 12] {
                    let (mut wide, mut narrow) = (staged(&codes, pad), staged(&codes, pad));
                    let end = wide.len();
                    let by_16 = clean_run_by(&mut wide, pad, 0, end, true);
                    let by_8 = clean_run_by(&mut narrow, pad, 0, end, false);
                    assert_eq!(by_16, by_8, "{codes:x?}");
                    assert_eq!(wide[..by_16.1], narrow[..by_8.1], "{codes:x?}");
                }
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn blocks_of_16_encode_clean_text_as_utf8() {
        if !(available() && wide_available()) {
            eprintln!("no AVX-512 VBMI2 here: the blocks of 16 are not exercised");
            return;
        }
        let text = "héllo wörld Ελλάδα 漢字 🔐 ".repeat(5);
        let codes: Vec<u32> = text.chars().map(u32::from).collect();
        let mut buf = staged(&codes, 0);
        let whole = codes.len() / 16 * 16;
        // SAFETY: the CPU has the features (checked above); 0 <= 0 <= end <= buf.len().
        let (r, o) = unsafe { avx512::clean_run(buf.as_mut_ptr(), 0, 0, buf.len()) };
        assert_eq!(r, 4 * whole);
        let want: String = text.chars().take(whole).collect();
        assert_eq!(&buf[..o], want.as_bytes());
    }

    #[test]
    fn out_of_bounds_arguments_do_nothing() {
        let mut buf = vec![0x41u8; 64];
        assert_eq!(clean_run(&mut buf, 0, 4, 64), (0, 4));
        assert_eq!(clean_run(&mut buf, 40, 0, 32), (40, 0));
        assert_eq!(clean_run(&mut buf, 0, 0, 65), (0, 0));
    }
}
