//! Byte-level JSON scanning shared by the two JSON readers, `json` (bytes to Python objects)
//! and `request_body` (an SDK's request bytes compacted into locked memory), and the writer:
//! the number grammar (RFC 8259) and the search for the bytes a string must escape (SIMD
//! compares over chunks, a word at a time within one).

#![forbid(unsafe_code)]

/// The extent of a JSON number (RFC 8259 grammar), found by `scan_number`.
pub struct NumberScan {
    /// Index just past the number's last byte.
    pub end: usize,
    /// Digits of the integer part (sign excluded).
    pub int_digits: usize,
    /// Whether it has a fraction or an exponent.
    pub is_float: bool,
}

/// Match the JSON number grammar at `start` in `s`; `None` when the bytes there are not a
/// number. The one scanner of both JSON readers (`json`'s and `request_body`'s).
pub fn scan_number(s: &[u8], start: usize) -> Option<NumberScan> {
    let digits_from = |mut pos: usize| {
        while let Some(b'0'..=b'9') = s.get(pos) {
            pos += 1;
        }
        pos
    };
    let mut pos = start;
    if s.get(pos) == Some(&b'-') {
        pos += 1;
    }
    let int_start = pos;
    pos = match s.get(pos) {
        Some(b'0') => pos + 1,
        Some(b'1'..=b'9') => digits_from(pos),
        _ => return None,
    };
    let int_digits = pos - int_start;
    let mut is_float = false;
    if s.get(pos) == Some(&b'.') {
        is_float = true;
        pos += 1;
        if !matches!(s.get(pos), Some(b'0'..=b'9')) {
            return None;
        }
        pos = digits_from(pos);
    }
    if let Some(b'e' | b'E') = s.get(pos) {
        is_float = true;
        pos += 1;
        if let Some(b'+' | b'-') = s.get(pos) {
            pos += 1;
        }
        if !matches!(s.get(pos), Some(b'0'..=b'9')) {
            return None;
        }
        pos = digits_from(pos);
    }
    Some(NumberScan {
        end: pos,
        int_digits,
        is_float,
    })
}

/// Length of the longest prefix of `bytes` with no control character, '"' or '\\' (the
/// bytes a JSON string body must escape). 32 bytes at a time by a test the compiler turns
/// into SIMD compares on every target (SSE2 on x86-64, NEON on aarch64), with no unsafe code;
/// the chunk holding a special byte is then read a word at a time.
pub fn plain_prefix(bytes: &[u8]) -> usize {
    const CHUNK: usize = 32;
    let mut at = 0;
    for chunk in bytes.chunks_exact(CHUNK) {
        // No early exit inside the chunk: a branch-free fold vectorises.
        let special = chunk.iter().fold(false, |any, &b| {
            any | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if special {
            break;
        }
        at += CHUNK;
    }
    while let Some(word) = bytes.get(at..at + 8) {
        let mask = word_escape_mask(u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
        if mask != 0 {
            return at + (mask.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&b) = bytes.get(at) {
        if b < 0x20 || b == b'"' || b == b'\\' {
            break;
        }
        at += 1;
    }
    at
}

/// The high bit of each byte of `word` that is a control character, '"' or '\\', read as
/// little-endian (first byte lowest). Lanes above the first flagged one may be flagged falsely
/// (a borrow runs upwards), so only the lowest set bit is exact: `trailing_zeros() / 8` is the
/// index of the first such byte.
pub fn word_escape_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = word ^ (ONES * u64::from(b'"'));
    let has_quote = quote.wrapping_sub(ONES) & !quote & HIGH;
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let has_backslash = backslash.wrapping_sub(ONES) & !backslash & HIGH;
    below_space | has_quote | has_backslash
}

#[cfg(test)]
mod tests {
    use super::{plain_prefix, scan_number, word_escape_mask};

    #[test]
    fn the_escape_mask_finds_each_special_byte_in_each_lane() {
        assert_eq!(word_escape_mask(u64::from_le_bytes(*b"abcd 7~\x7f")), 0);
        assert_eq!(
            word_escape_mask(u64::from_le_bytes([
                0xC3, 0xA9, 0x80, 0xFF, b' ', b'a', b'z', b'0'
            ])),
            0
        );
        for special in [0u8, 0x1F, b'\n', b'"', b'\\'] {
            for lane in 0..8 {
                let mut bytes = *b"abcdefgh";
                bytes[lane] = special;
                assert_ne!(
                    word_escape_mask(u64::from_le_bytes(bytes)),
                    0,
                    "{special:#x} at {lane}"
                );
            }
        }
    }

    #[test]
    fn the_lowest_flagged_lane_is_the_first_special_byte() {
        // Every special byte in every lane, behind every mix of bytes that could borrow.
        let fillers = [b'a', 0x21, 0x80, 0xFF, 0x20, 0x23, 0x5D, 0x5B];
        for special in [0u8, 0x01, 0x1F, b'"', b'\\'] {
            for lane in 0..8 {
                for &filler in &fillers {
                    let mut bytes = [filler; 8];
                    bytes[lane] = special;
                    // Anything may follow the first special byte, specials included.
                    for tail in [filler, special, 0x00, b'"'] {
                        bytes[lane + 1..].fill(tail);
                        let mask = word_escape_mask(u64::from_le_bytes(bytes));
                        assert_eq!(mask.trailing_zeros() / 8, lane as u32, "{bytes:?}");
                    }
                }
            }
        }
        assert_eq!(word_escape_mask(u64::from_le_bytes(*b"plain ~\x7f")), 0);
    }

    #[test]
    fn the_plain_prefix_ends_at_the_first_special_byte() {
        // Every special byte at every offset of a few chunks, behind bytes of every class.
        for special in [0u8, 0x1F, b'\n', b'"', b'\\'] {
            for filler in [b'a', 0x20, 0x7F, 0x80, 0xFF, 0x21, 0x5B, 0x5D] {
                for len in 0..100 {
                    let mut bytes = vec![filler; len];
                    assert_eq!(plain_prefix(&bytes), len);
                    for at in 0..len {
                        bytes[at] = special;
                        assert_eq!(plain_prefix(&bytes), at, "{special} {filler} {len}");
                        bytes[at] = filler;
                    }
                }
            }
        }
    }

    #[test]
    fn scans_the_grammar_and_reports_its_shape() {
        for (text, end, int_digits, is_float) in [
            ("0", 1, 1, false),
            ("-12,", 3, 2, false),
            ("3.25]", 4, 1, true),
            ("1e9", 3, 1, true),
            ("-0.5E-3}", 7, 1, true),
            ("01", 1, 1, false),
        ] {
            let scan = scan_number(text.as_bytes(), 0).unwrap();
            assert_eq!(
                (scan.end, scan.int_digits, scan.is_float),
                (end, int_digits, is_float),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_number() {
        for text in ["", "-", "+1", ".5", "1.", "1.e3", "1e", "1e+", "-x", "x"] {
            assert!(scan_number(text.as_bytes(), 0).is_none(), "{text:?}");
        }
    }
}
