//! The vector step of `json_wide::decode_units` for raw UTF-8 text, code points (4-byte units:
//! `wchar_t` everywhere but Windows): 64 bytes of a JSON string body at a time with AVX-512
//! (VBMI's byte permutes, VBMI2's byte compression, CD's leading-zero count; found at run
//! time).
//!
//! A server that writes non-ASCII text as it is (`ensure_ascii=False`, most JSON encoders but
//! Python's) sends UTF-8 whose characters the scalar steps take one at a time, a branch or two
//! each (~1.1 ms per MiB of mixed-script prose, where a character is 1.6 bytes on average).
//! Here a block's bytes are classified at once (ASCII, lead bytes of 2, 3 and 4, continuation
//! bytes), the characters' starts packed, 16 at a time, into 32-bit lanes, each lane given
//! its character's four bytes by one byte permute, and the code points computed in the lanes.
//!
//! Only what `std::str::from_utf8` accepts is taken: the continuation bytes must be exactly
//! those the lead bytes call for, and a code point must not be overlong, a surrogate or beyond
//! U+10FFFF. A block is taken up to its last character's start (which may run past it: the
//! next block begins there) or its first byte that needs care (a quote, a backslash, a control
//! character, a byte no UTF-8 has); anything invalid before that leaves the whole block to the
//! scalar steps, which refuse it, or read it, exactly as before.

use crate::escapes_avx512::Run;

/// Whether the vector step runs on this machine: `escapes_avx512`'s features (VBMI2's byte
/// compression among them), and CD's leading-zero count.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::escapes_avx512::available() && std::arch::is_x86_feature_detected!("avx512cd")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Decode the raw text of the string body `src[read..]` as native-endian code points into
/// `dst[written..]`, a block of 64 input bytes at a time, for as long as blocks start with
/// valid UTF-8 text; it stops before the first byte that needs care, before a block holding
/// anything invalid, and where fewer than 64 bytes of input or 256 of room are left. Without
/// the vector step (`available()` false), or with bounds outside the slices,
/// nothing is done.
pub fn text_blocks(src: &[u8], read: usize, dst: &mut [u8], written: usize) -> Run {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has AVX-512F, BW, VBMI, VBMI2 and CD, POPCNT and BMI1 (checked just
        // above).
        return unsafe {
            crate::escapes_avx512::bounded_step(avx512::text_blocks, src, read, dst, written)
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (src, dst); // no vector step on this target
    Run::unmoved(read, written)
}

/// A block's byte classes, one bit per byte (bit p for the byte at p).
#[cfg(any(target_arch = "x86_64", test))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Classes {
    /// Continuation bytes (0x80-0xBF).
    continuation: u64,
    /// Lead bytes of 2-byte (0xC0-0xDF), 3-byte (0xE0-0xEF) and 4-byte (0xF0-0xF7) characters.
    lead2: u64,
    lead3: u64,
    lead4: u64,
    /// Quotes, backslashes, control characters, and bytes from 0xF8 on (in no UTF-8).
    care: u64,
}

/// The prefix of a block the vector step takes: its length, and the starts of the characters
/// in it (0 bytes when the prefix's continuation bytes are not exactly those its lead bytes
/// call for). Plain bit arithmetic, tested on its own.
#[cfg(any(target_arch = "x86_64", test))]
fn taken(classes: Classes) -> (u32, u64) {
    let starts = !classes.continuation;
    // Up to the first byte that needs care, and before the last character's start: that
    // character may run past the block (the next block begins with it). Neither is a
    // continuation byte, so a character that is whole before them ends before them.
    let last_start = 63 - starts.leading_zeros().min(63);
    let taken = classes.care.trailing_zeros().min(last_start);
    let called_for = (classes.lead2 | classes.lead3 | classes.lead4) << 1
        | (classes.lead3 | classes.lead4) << 2
        | classes.lead4 << 3;
    // `taken` is at most 63: the byte at it is no continuation byte, and none may be called for
    // there (a character before it running on past it).
    let before = (1u64 << taken) - 1;
    if called_for & (before | 1 << taken) != classes.continuation & before {
        return (0, 0);
    }
    (taken, starts & before)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{taken, Classes, Run};
    use crate::escapes_avx512::{POSITIONS, SPREAD};

    /// By the count of a lead byte's leading ones (0 for ASCII, 2-4), the right shift that
    /// drops the six bits of each byte its character lacks of four, and its least code point
    /// (anything less is an overlong form).
    const SHIFTS: [i32; 16] = [18, 18, 12, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const LEAST: [i32; 16] = [0, 0, 0x80, 0x800, 0x1_0000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    /// The code points of the (up to) 16 characters of group `group` of the packed starts
    /// `packed` (lanes at and past `count` are zero), and a mask of those that are overlong,
    /// surrogates or beyond U+10FFFF.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vbmi2,avx512cd,popcnt,bmi1")]
    fn code_points(block: __m512i, packed: __m512i, group: usize, count: u32) -> (__m512i, u16) {
        let dword = _mm512_set1_epi32;
        // SAFETY: each table is 64 bytes (unaligned loads).
        let (spread, shifts, least) = unsafe {
            (
                _mm512_loadu_si512(SPREAD[group].as_ptr().cast()),
                _mm512_loadu_si512(SHIFTS.as_ptr().cast()),
                _mm512_loadu_si512(LEAST.as_ptr().cast()),
            )
        };
        // Each lane's start in its four bytes, plus 0-3: its character's bytes, the first
        // lowest (indices past the block wrap, and lie beyond the character: shifted out).
        let indices = _mm512_add_epi8(_mm512_permutexvar_epi8(spread, packed), dword(0x0302_0100));
        let bytes = _mm512_permutexvar_epi8(indices, block);
        let ones = _mm512_lzcnt_epi32(_mm512_xor_si512(_mm512_slli_epi32::<24>(bytes), dword(-1)));
        // The lead byte's payload bits (7, 5, 4 or 3: 0x7F shifted by its leading ones), six
        // of each continuation byte.
        let lead_bits = _mm512_srlv_epi32(dword(0x7F), ones);
        let bits = _mm512_and_si512(bytes, _mm512_or_si512(lead_bits, dword(0x3F3F_3F00)));
        // (b0 << 6 | b1) and (b2 << 6 | b3) in 16-bit lanes, then b0 << 18 | ... | b3, and
        // shifted down by six bits per byte the character lacks of four.
        let pairs = _mm512_maddubs_epi16(bits, _mm512_set1_epi16(0x0140));
        let joined = _mm512_madd_epi16(pairs, dword(0x0001_1000));
        let code = _mm512_srlv_epi32(joined, _mm512_permutexvar_epi32(ones, shifts));
        let lanes = ((1u32 << count.min(16)) - 1) as u16;
        let code = _mm512_maskz_mov_epi32(lanes, code);
        let bad = _mm512_cmplt_epu32_mask(code, _mm512_permutexvar_epi32(ones, least))
            | _mm512_cmpgt_epu32_mask(code, dword(0x10_FFFF))
            | _mm512_cmpeq_epi32_mask(_mm512_srli_epi32::<11>(code), dword(0xD800 >> 11));
        (code, bad & lanes)
    }

    /// `super::text_blocks` on AVX-512.
    ///
    /// # Safety
    /// The CPU has AVX-512F, BW, VBMI, VBMI2 and CD, POPCNT and BMI1; `src` points to
    /// `src_len` readable bytes and `dst` to `dst_len` writable ones; `read <= src_len`,
    /// `written <= dst_len`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vbmi2,avx512cd,popcnt,bmi1")]
    pub unsafe fn text_blocks(
        src: *const u8,
        src_len: usize,
        mut read: usize,
        dst: *mut u8,
        dst_len: usize,
        mut written: usize,
    ) -> Run {
        let byte = |b: u8| _mm512_set1_epi8(b as i8);
        // SAFETY: the table is 64 bytes (unaligned load).
        let positions = unsafe { _mm512_loadu_si512(POSITIONS.as_ptr().cast()) };
        let mut all_bits = _mm512_setzero_si512();
        // A block gives at most 63 code points, written in up to four stores of 64 bytes.
        while src_len - read >= 64 && dst_len - written >= 256 {
            // SAFETY: `read + 64 <= src_len`: the block lies within the input (unaligned load).
            let block = unsafe { _mm512_loadu_si512(src.add(read).cast()) };
            let at_least = |b: u8| _mm512_cmpge_epu8_mask(block, byte(b));
            let (c0, e0, f0, f8) = (
                at_least(0xC0),
                at_least(0xE0),
                at_least(0xF0),
                at_least(0xF8),
            );
            let classes = Classes {
                continuation: _mm512_movepi8_mask(block) & !c0,
                lead2: c0 & !e0,
                lead3: e0 & !f0,
                lead4: f0 & !f8,
                care: _mm512_cmpeq_epi8_mask(block, byte(b'"'))
                    | _mm512_cmpeq_epi8_mask(block, byte(b'\\'))
                    | _mm512_cmplt_epu8_mask(block, byte(0x20))
                    | f8,
            };
            let (taken, starts) = taken(classes);
            if taken == 0 {
                break;
            }
            // The starts' positions packed, then decoded 16 at a time.
            let packed = _mm512_maskz_compress_epi8(starts, positions);
            let count = starts.count_ones();
            let mut out = written;
            let mut bad = 0u16;
            let mut block_bits = _mm512_setzero_si512();
            for group in 0..count.div_ceil(16) {
                let (code, group_bad) =
                    code_points(block, packed, group as usize, count - 16 * group);
                // SAFETY: this block's stores start below `written + 192` as it was on entry,
                // and `written + 256 <= dst_len` then: 64 bytes fit (unaligned store). What a
                // refused block wrote lies past what is counted, overwritten next.
                unsafe { _mm512_storeu_si512(dst.add(out).cast(), code) };
                out += 4 * (count - 16 * group).min(16) as usize;
                bad |= group_bad;
                block_bits = _mm512_or_si512(block_bits, code);
            }
            if bad != 0 {
                // An overlong form, a surrogate or a code point past U+10FFFF: the block is
                // the scalar steps'.
                break;
            }
            read += taken as usize;
            written = out;
            all_bits = _mm512_or_si512(all_bits, block_bits);
        }
        Run {
            read,
            written,
            bits: _mm512_reduce_or_epi32(all_bits) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classes of `block`, byte by byte.
    fn classes_of(block: &[u8; 64]) -> Classes {
        let mut classes = Classes::default();
        for (p, &b) in block.iter().enumerate() {
            let bit = 1u64 << p;
            match b {
                0x80..=0xBF => classes.continuation |= bit,
                0xC0..=0xDF => classes.lead2 |= bit,
                0xE0..=0xEF => classes.lead3 |= bit,
                0xF0..=0xF7 => classes.lead4 |= bit,
                _ => {}
            }
            if b == b'"' || b == b'\\' || !(0x20..0xF8).contains(&b) {
                classes.care |= bit;
            }
        }
        classes
    }

    fn taken_of(text: &[u8]) -> (u32, u64) {
        let mut block = [b'.'; 64];
        let text = &text[..text.len().min(64)];
        block[..text.len()].copy_from_slice(text);
        taken(classes_of(&block))
    }

    #[test]
    fn a_block_is_taken_up_to_its_last_start_or_its_first_byte_that_needs_care() {
        // Plain text: all but the last byte (it may start a character running past the end).
        assert_eq!(taken_of(b""), (63, (1 << 63) - 1));
        assert_eq!(taken_of(b"ab\"").0, 2);
        assert_eq!(taken_of(b"ab\\n").0, 2);
        assert_eq!(taken_of(b"ab\n").0, 2);
        assert_eq!(taken_of("aé\"".as_bytes()), (3, 0b011));
        assert_eq!(taken_of("漢字\"".as_bytes()), (6, 0b1001));
        // A byte in no UTF-8 needs care.
        assert_eq!(taken_of(b"ab\xF8").0, 2);
        // A character whose last byte is the block's last: it waits for the next block.
        let mut text = vec![b'.'; 60];
        text.extend_from_slice("🔐".as_bytes());
        assert_eq!(taken_of(&text).0, 60);
        // One that runs past the block's end: the same.
        let mut text = vec![b'.'; 62];
        text.extend_from_slice("🔐".as_bytes());
        assert_eq!(taken_of(&text).0, 62);
    }

    #[test]
    fn a_prefix_with_continuation_bytes_its_leads_do_not_call_for_is_not_taken() {
        for bad in [
            &b"a\x80b\""[..],    // a stray continuation byte
            b"\x80abc",          // one at the block's start
            b"a\xC3b\"",         // a lead byte short of its continuation
            b"a\xE6\xBCb\"",     // short by one of two
            b"a\xF0\x9F\x94b\"", // short by one of three
            b"a\xC3\xA9\xA9b",   // one continuation byte too many
            b"a\xC3\"",          // cut short by a byte that needs care
        ] {
            assert_eq!(taken_of(bad), (0, 0), "{bad:?}");
        }
    }

    fn units_of(dst: &[u8], from: usize, to: usize) -> Vec<u32> {
        dst[from..to]
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Text of every UTF-8 length, the boundary code points of each among ordinary ones.
    fn sample_text(seed: u64, chars: usize) -> String {
        const EDGES: [u32; 12] = [
            0x20, 0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF, 0x1_0000, 0x10_FFFF,
            0x1F510,
        ];
        let mut state = seed;
        let mut text = String::new();
        for _ in 0..chars {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pick = (state >> 33) as u32;
            let code = match pick % 6 {
                0 => 0x20 + pick / 6 % 0x5F,
                1 => 0x80 + pick / 6 % 0x780,
                2 => 0x800 + pick / 6 % 0xD000,
                3 => 0x1_0000 + pick / 6 % 0x10_0000,
                4 => EDGES[(pick / 6) as usize % EDGES.len()],
                _ => u32::from(b"the quick fox "[(pick / 6) as usize % 14]),
            };
            let c = char::from_u32(code).unwrap_or('\u{FFFD}');
            if c != '"' && c != '\\' {
                text.push(c);
            }
        }
        text
    }

    /// `text_blocks` on `body` from `start` (a character boundary), checked against what the
    /// standard library reads from the same bytes: the prefix taken decodes to the same code
    /// points, ends at a character boundary, and `bits` is their OR. Returns the bytes read.
    fn check_run(body: &[u8], start: usize) -> Option<usize> {
        let mut dst = vec![0u8; 4 * body.len() + 256];
        let run = text_blocks(body, start, &mut dst, 8);
        if !available() {
            assert_eq!(run.read, start);
            return None;
        }
        let taken = std::str::from_utf8(&body[start..run.read]).expect("a valid prefix");
        let expected: Vec<u32> = taken.chars().map(u32::from).collect();
        assert_eq!(units_of(&dst, 8, run.written), expected);
        if run.read > start {
            assert_eq!(run.bits, expected.iter().fold(0, |all, &c| all | c));
        }
        Some(run.read)
    }

    #[test]
    fn valid_text_of_every_length_is_read_as_the_standard_library_reads_it() {
        for seed in 0..40 {
            let text = sample_text(seed, 50 + 37 * seed as usize);
            let mut body = text.into_bytes();
            body.push(b'"');
            let Some(read) = check_run(&body, 0) else {
                eprintln!("no AVX-512 VBMI here: the vector step is not exercised");
                return;
            };
            // Everything but the last block's worth: fewer than 64 bytes and a character.
            assert!(read + 64 + 4 > body.len(), "{read} of {}", body.len());
        }
    }

    #[test]
    fn nothing_invalid_is_ever_taken() {
        let invalid: [&[u8]; 16] = [
            b"\x80",             // a stray continuation byte
            b"\xBF",             //
            b"\xC0\xAF",         // overlong 2-byte forms
            b"\xC1\xBF",         //
            b"\xE0\x80\xAF",     // overlong 3-byte forms
            b"\xE0\x9F\xBF",     //
            b"\xED\xA0\x80",     // surrogates
            b"\xED\xBF\xBF",     //
            b"\xF0\x80\x80\xAF", // overlong 4-byte forms
            b"\xF0\x8F\xBF\xBF", //
            b"\xF4\x90\x80\x80", // past U+10FFFF
            b"\xF5\x80\x80\x80", //
            b"\xF8\x88\x80\x80", // 5 and 6 byte forms
            b"\xFC\x84\x80\x80", //
            b"\xE6\xBC",         // cut short
            b"\xF0\x9F\x94",     //
        ];
        let text = sample_text(7, 300);
        let bytes = text.as_bytes();
        for bad in invalid {
            for offset in 0..200 {
                // The nearest character boundary at or after `offset`.
                let at = (offset..bytes.len())
                    .find(|&k| text.is_char_boundary(k))
                    .unwrap();
                let mut body = bytes[..at].to_vec();
                body.extend_from_slice(bad);
                body.extend_from_slice(&bytes[at..]);
                body.push(b'"');
                let Some(read) = check_run(&body, 0) else {
                    return;
                };
                assert!(read <= at, "{bad:?} at {at}: read {read}");
            }
        }
    }

    #[test]
    fn bytes_that_need_care_end_the_run_before_them() {
        let text = sample_text(3, 200);
        let bytes = text.as_bytes();
        for care in [b'"', b'\\', b'\n', 0x00, 0x1F] {
            for at in (0..bytes.len() - 1).filter(|&k| text.is_char_boundary(k)) {
                let mut body = bytes[..at].to_vec();
                body.push(care);
                body.extend_from_slice(&bytes[at..]);
                let Some(read) = check_run(&body, 0) else {
                    return;
                };
                assert!(read <= at, "{care} at {at}: read {read}");
                // And from just past it, the rest is read on.
                if at + 65 < body.len() {
                    assert!(check_run(&body, at + 1).unwrap() > at + 1);
                }
            }
        }
    }
}
