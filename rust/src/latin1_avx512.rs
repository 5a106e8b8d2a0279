//! Raw UTF-8 text whose characters are all in Latin-1 (U+0000..=U+00FF), decoded to its
//! Latin-1 bytes 64 bytes a step with AVX-512 (VBMI's byte permute, VBMI2's byte compression;
//! found at run time), for a `str` built by `PyUnicode_DecodeLatin1`.
//!
//! European prose sent as it is (`ensure_ascii=False`) has a two-byte character every few
//! bytes: CPython's UTF-8 decoder takes each one apart from the ASCII runs around it (~1 ms per
//! MiB of French), and the route through code points (`utf8_avx512`) writes four bytes a
//! character only to narrow them again. Here a block's lead bytes (0xC2, 0xC3) are dropped by
//! one compression and each continuation byte gains 0x40 where its lead was 0xC3.
//!
//! The other way to Latin-1 bytes, code points the escape decoder wrote (an escaped answer
//! whose characters all lie below U+0100), is `narrow_avx512`'s.
//!
//! Only what `std::str::from_utf8` accepts is decoded, and only Latin-1: any byte from 0x80 on
//! that is neither such a lead byte nor the continuation byte its lead calls for (an overlong
//! 0xC0/0xC1 form, a stray continuation, a lead cut short, a character beyond U+00FF) makes
//! the whole text refused, for the caller's usual reader to read or name the error.

/// Whether the vector step runs on this machine: AVX-512 F, BW, VBMI and VBMI2, and POPCNT,
/// which the escape decoder needs too (`escapes_avx512::available`, which asks for BMI1 besides:
/// every CPU with AVX-512 has it).
pub fn available() -> bool {
    crate::escapes_avx512::available()
}

/// Bytes of room `to_latin1` needs in its output beyond the text's length: each step stores a
/// whole 64-byte vector, of which it keeps only the bytes it decoded.
pub const SLACK: usize = 64;

/// The raw UTF-8 `text` as Latin-1 bytes at the start of `dst`, and how many: `None` where the
/// text is not valid UTF-8 of Latin-1 characters only, where `dst` is shorter than
/// `text.len() + SLACK`, or without the vector step (`available()` false). `dst` may hold
/// decoded bytes either way.
pub fn to_latin1(text: &[u8], dst: &mut [u8]) -> Option<usize> {
    if dst.len() < text.len().checked_add(SLACK)? {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has AVX-512 F, BW, VBMI and VBMI2, and POPCNT (checked just above);
        // `dst` has `text.len() + SLACK` bytes at least (checked above).
        return unsafe { avx512::to_latin1(text, dst) };
    }
    None
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Each lane's index in a byte permute that gives it the byte before it (lane 0 its own).
    static PREVIOUS: [u8; 64] = {
        let mut index = [0u8; 64];
        let mut lane = 1;
        while lane < 64 {
            index[lane] = (lane - 1) as u8;
            lane += 1;
        }
        index
    };

    /// # Safety
    /// The CPU has AVX-512 F, BW, VBMI and VBMI2, and POPCNT; `dst.len() >= text.len() + 64`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vbmi2,popcnt")]
    pub unsafe fn to_latin1(text: &[u8], dst: &mut [u8]) -> Option<usize> {
        let byte = |b: u8| _mm512_set1_epi8(b as i8);
        // SAFETY: `PREVIOUS` is 64 bytes; an unaligned load.
        let previous = unsafe { _mm512_loadu_si512(PREVIOUS.as_ptr().cast()) };
        let (mut read, mut written) = (0, 0);
        while read < text.len() {
            let mut len = (text.len() - read).min(64);
            let mut within = u64::MAX >> (64 - len);
            // SAFETY: the lanes `within` selects, `read..read + len`, lie in `text`; a masked
            // load reads no byte outside them.
            let block = unsafe { _mm512_maskz_loadu_epi8(within, text.as_ptr().add(read).cast()) };
            let high = _mm512_movepi8_mask(block);
            if high == 0 {
                // SAFETY: `written <= read`, so 64 bytes from `written` lie in `dst`.
                unsafe { _mm512_storeu_si512(dst.as_mut_ptr().add(written).cast(), block) };
                (read, written) = (read + len, written + len);
                continue;
            }
            let mut lead = _mm512_cmpeq_epi8_mask(block, byte(0xC2))
                | _mm512_cmpeq_epi8_mask(block, byte(0xC3));
            let last = 1u64 << (len - 1);
            if lead & last != 0 {
                // A full block's last lead byte: its character starts the next block. At the
                // text's end it is a character cut short.
                if len < 64 || read + len == text.len() {
                    return None;
                }
                (len, within) = (63, within & !last);
                lead &= within;
            }
            let continuation = _mm512_mask_cmple_epu8_mask(high & within, block, byte(0xBF));
            // Every byte from 0x80 on is a lead or the continuation just after one.
            if continuation != lead << 1 || high & within != lead | continuation {
                return None;
            }
            let after_c3 =
                _mm512_cmpeq_epi8_mask(_mm512_permutexvar_epi8(previous, block), byte(0xC3));
            let latin1 = _mm512_mask_add_epi8(block, continuation & after_c3, block, byte(0x40));
            let kept = within & !lead;
            // SAFETY: `written <= read`, so 64 bytes from `written` lie in `dst`.
            unsafe {
                _mm512_storeu_si512(
                    dst.as_mut_ptr().add(written).cast(),
                    _mm512_maskz_compress_epi8(kept, latin1),
                )
            };
            read += len;
            written += kept.count_ones() as usize;
        }
        Some(written)
    }
}

#[cfg(test)]
mod tests {
    use super::{available, to_latin1, SLACK};

    fn decoded(text: &[u8]) -> Option<Vec<u8>> {
        let mut dst = vec![0xAA; text.len() + SLACK];
        to_latin1(text, &mut dst).map(|n| dst[..n].to_vec())
    }

    /// What the standard library makes of `text`: its Latin-1 bytes, or `None`.
    fn expected(text: &[u8]) -> Option<Vec<u8>> {
        let chars = std::str::from_utf8(text).ok()?.chars();
        chars.map(|c| u8::try_from(u32::from(c)).ok()).collect()
    }

    /// Pseudo-random Latin-1 text of `chars` characters, mostly ASCII with two-byte runs.
    fn sample(seed: u64, chars: usize) -> String {
        let mut state = seed | 1;
        (0..chars)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                match state % 5 {
                    0 | 1 => char::from(b' ' + (state >> 8) as u8 % 95),
                    _ => char::from(0x80 + (state >> 16) as u8 % 0x80),
                }
            })
            .collect()
    }

    #[test]
    fn latin1_text_of_every_length_decodes_as_the_standard_library_decodes_it() {
        if !available() {
            return;
        }
        for chars in 0..300 {
            for seed in [1, 7, 1234] {
                let text = sample(seed + chars as u64, chars);
                let ours = decoded(text.as_bytes());
                assert_eq!(
                    ours,
                    expected(text.as_bytes()),
                    "{chars} chars, seed {seed}"
                );
                assert!(ours.is_some());
            }
        }
    }

    #[test]
    fn a_two_byte_character_at_every_offset_across_blocks_decodes() {
        if !available() {
            return;
        }
        for at in 0..200 {
            for c in ['\u{80}', '\u{bf}', '\u{c0}', '\u{ff}'] {
                let mut text = "a".repeat(at);
                text.push(c);
                text.push_str(&"b".repeat(200 - at));
                assert_eq!(
                    decoded(text.as_bytes()),
                    expected(text.as_bytes()),
                    "{at} {c}"
                );
            }
        }
    }

    #[test]
    fn nothing_invalid_or_beyond_latin1_is_decoded() {
        if !available() {
            return;
        }
        let bad: [&[u8]; 9] = [
            b"\x80",         // a stray continuation
            b"\xc3",         // a lead cut short (by ASCII)
            b"\xc3\xc3\xa9", // a lead followed by a lead
            b"\xc0\xaf",     // overlong
            b"\xc1\xbf",     // overlong
            b"\xc4\x80",     // U+0100
            b"\xe2\x82\xac", // U+20AC
            b"\xf0\x9f\x94\x90",
            b"\xff",
        ];
        let body = sample(99, 300).into_bytes();
        for b in bad {
            for at in (0..=body.len()).filter(|&k| std::str::from_utf8(&body[..k]).is_ok()) {
                let text = [&body[..at], b, &body[at..]].concat();
                assert_eq!(decoded(&text), None, "{b:?} at {at}");
            }
        }
        // A lead byte as the text's last byte, at every length (a full block's end included).
        for len in 1..200 {
            let mut text = "x".repeat(len - 1).into_bytes();
            text.push(0xC3);
            assert_eq!(decoded(&text), None, "{len}");
        }
    }

    #[test]
    fn too_little_room_is_refused_and_nothing_is_written_past_the_room() {
        let text = sample(5, 500);
        let len = text.len();
        let mut dst = vec![0u8; len + SLACK - 1];
        assert_eq!(to_latin1(text.as_bytes(), &mut dst), None);
        assert!(dst.iter().all(|&b| b == 0));
        if !available() {
            return;
        }
        // Room exactly: the vector's stores stay in it; a guard past it is untouched.
        let mut dst = vec![0u8; len + SLACK + 16];
        let written = to_latin1(text.as_bytes(), &mut dst[..len + SLACK]);
        assert_eq!(
            written.map(|n| dst[..n].to_vec()),
            expected(text.as_bytes())
        );
        assert!(dst[len + SLACK..].iter().all(|&b| b == 0));
    }

    /// `cargo test --release --no-default-features --lib latin1_avx512::tests::time_to_latin1 -- --ignored --nocapture`
    #[test]
    #[ignore = "a timing, run by hand"]
    fn time_to_latin1() {
        let text = "déjà vu à la française, naïve ".repeat((1 << 20) / 32);
        let mut dst = vec![0u8; text.len() + SLACK];
        let best = crate::timing::best_of(50, || {
            std::hint::black_box(to_latin1(text.as_bytes(), &mut dst));
        });
        let scalar = crate::timing::best_of(50, || {
            std::hint::black_box(expected(text.as_bytes()));
        });
        println!("1 MiB of French: {best:?} (scalar chars {scalar:?})");
    }
}
