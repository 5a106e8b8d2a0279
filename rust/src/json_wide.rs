//! A JSON string body decoded straight to the `wchar_t`s CPython builds a `str` from with one
//! of its fast stable-ABI constructors (`pystr`), instead of its UTF-8 decoder, which is slow
//! on mixed-script text.
//!
//! A server that escapes every non-ASCII character (Python's `json.dumps`) writes `\uXXXX`:
//! a UTF-16 code unit already (a surrogate pair already the pair), with no UTF-8 to pack and
//! unpack on the way. Raw UTF-8 between the escapes is decoded here too, as strictly as
//! `std::str::from_utf8` checks it. Anything the strict reader refuses, or might, stops the
//! decoder (`Refused`): the reader then reads the string the way it always has, which names
//! the error.
//!
//! The units are what `wchar_t` holds where the module runs: code points (4 bytes) everywhere
//! but Windows, where they are UTF-16 code units (2 bytes). A high surrogate escape followed by
//! a low one is one code point, as Python's `json` reads it (in UTF-16, its two units, which
//! CPython joins again); every other surrogate escape is a lone surrogate, kept as it is.
//! Decoded at their final width, the units need no second pass (a pass that widened UTF-16 in
//! place cost ~0.3 ms per MiB of mixed text, ~1 ms of emoji).

#![forbid(unsafe_code)]

use crate::escapes_avx512;
use crate::json_scan::word_escape_mask;
use crate::json_string::{hex4, unicode_escape};
use crate::unit_counts::unit_counts;
use crate::utf8_avx512;

/// How far a decoding got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes read.
    pub read: usize,
    /// Units written (`wchar_t`s of `UNIT_BYTES`, or of the `UNIT` `decode_units` was given).
    pub written: usize,
    /// The OR of the code units written (ASCII ones copied 8 at a time left out: they change
    /// nothing): below 0x100 exactly when every character is Latin-1.
    pub bits: u32,
    /// Whether a lone surrogate was written.
    pub lone_surrogate: bool,
}

/// Why `decode_wide` stopped before the closing quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WideStop {
    /// The output is full: everything up to `Progress` is decoded; go on with a bigger one
    /// holding the same first `written` code units.
    NoRoom(Progress),
    /// The body is not a string the strict reader accepts as it is (unterminated, a control
    /// character, a bad escape, bytes that are not UTF-8): read it the usual way instead.
    Refused,
}

/// A string body decoded to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wide {
    /// Offset of the closing quote in the input.
    pub closing_quote: usize,
    /// Units written (as `Progress::written`), native-endian.
    pub units: usize,
    /// The OR of the code units (see `Progress`).
    pub bits: u32,
    /// Whether a `\uXXXX` escape gave a lone surrogate.
    pub lone_surrogate: bool,
}

const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// A room estimate for the string body `body` in `decode_wide`'s units (code points where
/// they are 4 bytes, else UTF-16 code units, `UnitCounts::utf16_units`): exact
/// where every escaped high surrogate has its low one after it (a lone one makes it short by
/// one, which `decode_wide` reports as `NoRoom`). A `str` allocated at this length is not cut
/// afterwards: a cut hands the allocator back a smaller block than the next such `str` asks
/// for, and glibc maps, faults in and unmaps a fresh one for every megabyte `str` that way.
pub fn estimated_wide_units(body: &[u8]) -> usize {
    let counts = unit_counts(body);
    if UNIT_BYTES == 4 {
        counts.code_points()
    } else {
        counts.utf16_units()
    }
}

/// Whether the string body `body` (up to its closing quote) is sure to decode to ASCII: no
/// raw byte beyond ASCII and no `\u` escape of a code point above U+007F. Such strings keep
/// the reader's UTF-8 path, which decodes them in place. Either answer reads correctly (it
/// only picks the path): a malformed escape may make it say no where the reader refuses.
///
/// Checked a block at a time, `is_ascii` first, then whether a backslash in it is followed by
/// a `u`, and only then a `memchr` per escape (rather than `memmem::find`, which builds a
/// searcher on every call: about 400 instructions, more than the rest of a short string), so
/// that either kind of non-ASCII text is told near its start:
/// raw UTF-8 by its bytes, a server's `\u`-escaped text (all ASCII bytes) by its first escape,
/// not after a pass over megabytes of it.
pub fn ascii_only(body: &[u8]) -> bool {
    const BLOCK: usize = 4096;
    // Where the next escape may start: past the character the last one escaped.
    let mut from = 0;
    for (k, block) in body.chunks(BLOCK).enumerate() {
        if !block.is_ascii() {
            return false;
        }
        let end = k * BLOCK + block.len();
        if !backslash_u_in(body, from, end) {
            // No `\u` here: the block's escapes (two bytes each) need no look, as text with
            // many `\n` would otherwise cost a `memchr` call each. A run of backslashes at its
            // end, of odd length, escapes the next block's first byte.
            let run = body.get(from..end).unwrap_or_default();
            let trailing = run.iter().rev().take_while(|&&b| b == b'\\').count();
            from = end + trailing % 2;
            continue;
        }
        while let Some(at) = memchr::memchr(b'\\', body.get(from..end).unwrap_or_default()) {
            let escape = from + at;
            if body.get(escape + 1) == Some(&b'u') {
                let hex = body.get(escape + 2..escape + 5).unwrap_or_default();
                if !matches!(hex, [b'0', b'0', b'0'..=b'7']) {
                    return false;
                }
            }
            // The escaped character is skipped: an escaped backslash before a `u` is no escape.
            from = escape + 2;
        }
        from = from.max(end);
    }
    true
}

/// Whether a backslash in `body[from..end]` is followed by a `u` (which may lie at `end`):
/// a branch-free pass the compiler vectorises. Escaped backslashes are not told apart, so a
/// `\\u` (text) says yes too: the caller then looks at each escape.
fn backslash_u_in(body: &[u8], from: usize, end: usize) -> bool {
    let firsts = body.get(from..end).unwrap_or_default();
    let seconds = body.get(from + 1..).unwrap_or_default();
    firsts
        .iter()
        .zip(seconds)
        .fold(false, |any, (&a, &b)| any | ((a == b'\\') & (b == b'u')))
}

/// The most code units the rest of a body from `read` on can give: one per input byte (a
/// 4-byte character gives two).
pub fn most_units(body_len: usize, progress: &Progress) -> usize {
    progress.written + body_len.saturating_sub(progress.read)
}

/// Bytes of a `wchar_t`, the unit `decode_wide` writes: UTF-16 code units on Windows (2),
/// code points everywhere else (4).
pub const UNIT_BYTES: usize = if cfg!(windows) { 2 } else { 4 };

/// Write `code` at the start of `out` as `UNIT`-byte units, native-endian: one code point
/// (`UNIT` 4), or its UTF-16 code units (`UNIT` 2: two beyond the BMP); how many units.
#[inline(always)]
fn put_code<const UNIT: usize>(out: &mut [u8], code: u32) -> usize {
    if UNIT == 4 {
        out[..4].copy_from_slice(&code.to_ne_bytes());
        1
    } else if code < 0x1_0000 {
        out[..2].copy_from_slice(&(code as u16).to_ne_bytes());
        1
    } else {
        let high = 0xD800 + ((code - 0x1_0000) >> 10) as u16;
        let low = 0xDC00 + (code & 0x3FF) as u16;
        out[..2].copy_from_slice(&high.to_ne_bytes());
        out[2..4].copy_from_slice(&low.to_ne_bytes());
        2
    }
}

/// Write the units `first` and `second` (each below 0x10000) at the start of `out`,
/// native-endian.
#[inline(always)]
fn put_two<const UNIT: usize>(out: &mut [u8], first: u32, second: u32) {
    if UNIT == 4 {
        out[..4].copy_from_slice(&first.to_ne_bytes());
        out[4..8].copy_from_slice(&second.to_ne_bytes());
    } else {
        out[..2].copy_from_slice(&(first as u16).to_ne_bytes());
        out[2..4].copy_from_slice(&(second as u16).to_ne_bytes());
    }
}

/// Write the 8 bytes of `word` (read little-endian: ASCII, or anything, the caller keeps only
/// those it read as ASCII) at the start of `out` as `UNIT`-byte units, native-endian: two
/// units to a 64-bit store.
#[inline(always)]
fn put_bytes<const UNIT: usize>(out: &mut [u8], word: u64) {
    let (unit_bits, per_store) = (8 * UNIT as u32, 64 / (8 * UNIT));
    for store in 0..8 / per_store {
        let mut value = 0u64;
        for k in 0..per_store {
            let byte = (word >> (8 * (store * per_store + k))) & 0xFF;
            // The first unit lowest in memory: lowest in value when little-endian.
            let at = if cfg!(target_endian = "big") {
                per_store - 1 - k
            } else {
                k
            };
            value |= byte << (unit_bits * at as u32);
        }
        out[8 * store..8 * store + 8].copy_from_slice(&value.to_ne_bytes());
    }
}

/// Decode the JSON string body in `src` (starting just after its opening quote) as `wchar_t`s
/// (`UNIT_BYTES` each, native-endian) into `dst`, going on from `from` (`Progress::default()`
/// for a fresh start; a `NoRoom`'s progress, with its units copied into a bigger `dst`, to go
/// on). The same text Python's `json` reads: a high surrogate escape followed by a low one is
/// one character, any other surrogate escape stands alone.
pub fn decode_wide(src: &[u8], dst: &mut [u8], from: Progress) -> Result<Wide, WideStop> {
    decode_units::<UNIT_BYTES>(src, dst, from)
}

/// Whether `decode_wide` reads raw UTF-8 a block at a time here (`utf8_avx512`: code points,
/// on CPUs with its AVX-512 features), rather than a character at a time.
pub fn reads_raw_text_in_blocks() -> bool {
    UNIT_BYTES == 4 && escapes_avx512::available() && utf8_avx512::available()
}

/// Whether the raw UTF-8 `text` holds a character beyond Latin-1: a byte from 0xC4 on (a lead
/// byte of U+0100 or above, or no UTF-8 at all). Looked at 64 bytes at a time, each block's
/// bytes folded into their maximum (which the compiler vectorises), so that Latin-1 text costs
/// a fast pass and any other text stops at its first block beyond Latin-1.
pub fn beyond_latin1(text: &[u8]) -> bool {
    text.chunks(64)
        .any(|block| block.iter().fold(0u8, |most, &b| most.max(b)) >= 0xC4)
}

/// `decode_wide` into units of `UNIT` bytes (2 or 4): UTF-16 code units, or code points.
pub fn decode_units<const UNIT: usize>(
    src: &[u8],
    dst: &mut [u8],
    from: Progress,
) -> Result<Wide, WideStop> {
    decode_units_with::<UNIT>(src, dst, from, UNIT == 4 && escapes_avx512::available())
}

/// After a vector run that read less than this, the scalar steps go on alone for a while,
/// twice as long after each short run in a row (from `PAUSE_FIRST` to `PAUSE_MOST` bytes):
/// text the vector step mostly leaves to them (raw UTF-8) then costs a few hundred tries per
/// MiB, not one per character.
const VECTOR_MIN: usize = 64;
const PAUSE_FIRST: usize = 64;
const PAUSE_MOST: usize = 16 * 1024;

/// `decode_units`, with the vector step (`escapes_avx512`, code points only) or without.
#[inline(never)]
fn decode_units_with<const UNIT: usize>(
    src: &[u8],
    dst: &mut [u8],
    from: Progress,
    vector: bool,
) -> Result<Wide, WideStop> {
    const { assert!(UNIT == 2 || UNIT == 4) };
    let (mut i, mut o) = (from.read, from.written * UNIT);
    let (mut bits, mut lone_surrogate) = (from.bits, from.lone_surrogate);
    // Where the vector step is tried next, and how far the scalar steps go alone after it.
    let mut vector_from = if vector && UNIT == 4 { i } else { usize::MAX };
    let mut pause = PAUSE_FIRST;
    loop {
        // Whole blocks of plain text and `\u` escapes (the vector step, where it is due).
        if i >= vector_from {
            let start = i;
            loop {
                let run = escapes_avx512::clean_blocks(src, i, dst, o);
                bits |= run.bits;
                (i, o) = (run.read, run.written);
                // Stopped at raw UTF-8: its own blocks, then escapes again if they follow.
                if src.get(i).is_none_or(|&b| b < 0x80) {
                    break;
                }
                let run = utf8_avx512::text_blocks(src, i, dst, o);
                bits |= run.bits;
                let moved = run.read > i;
                (i, o) = (run.read, run.written);
                if !moved {
                    break;
                }
            }
            if i - start < VECTOR_MIN {
                vector_from = i + pause;
                pause = (2 * pause).min(PAUSE_MOST);
            } else {
                pause = PAUSE_FIRST;
            }
        }
        // The common steps on a fixed window of input and room for 8 units, until the vector
        // step is due again: a well-formed `\u` escape (or pair), an ASCII run 8 bytes at a
        // time (all 8 widened, those before the first byte that needs attention kept), a UTF-8
        // character. Anything else, and the last bytes of the input, take the careful step
        // below. (The vector step's call stays out of this loop: inside, it cost the scalar
        // steps ~30% on raw UTF-8 text, which they mostly read alone.)
        while let (true, Some(window), Some(out)) = (
            i < vector_from,
            src.get(i..i + 12),
            dst.get_mut(o..o + 8 * UNIT),
        ) {
            let window: &[u8; 12] = window.try_into().unwrap_or(&[b'\\'; 12]);
            let lead = window[0];
            let (code, taken) = if lead == b'\\' {
                // A `\u` escape of a character in the BMP, nearly every escape of a server
                // that escapes non-ASCII text, in a few branch-free steps, two at a time where
                // two follow each other (words in a non-Latin script); a surrogate pair the
                // same way (its two escapes are its two code units, or one code point); a
                // lone surrogate by the general rule.
                let (units, taken) = match *window {
                    [_, b'u', a, b, c, d, b'\\', b'u', e, f, g, h] => {
                        (hex_digits([a, b, c, d, e, f, g, h]), 2)
                    }
                    [_, b'u', a, b, c, d, ..] => (hex_digit4([a, b, c, d]).map(|u| [u, 0]), 1),
                    _ => (None, 0),
                };
                let pair = |[first, second]: [u16; 2]| {
                    let plain = first & 0xF800 != 0xD800 && second & 0xF800 != 0xD800;
                    plain || (first & 0xFC00 == 0xD800 && second & 0xFC00 == 0xDC00 && taken == 2)
                };
                match units {
                    Some([first, second]) if pair([first, second]) => {
                        let [first, second] = [u32::from(first), u32::from(second)];
                        if UNIT == 4 && first & 0xF800 == 0xD800 {
                            // A surrogate pair: one code point.
                            let code = 0x1_0000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                            out[..4].copy_from_slice(&code.to_ne_bytes());
                            bits |= code;
                            i += 12;
                            o += 4;
                        } else {
                            // Two characters, or one and what the next step overwrites, or
                            // (UTF-16) a pair's two units.
                            put_two::<UNIT>(out, first, second);
                            bits |= first | second;
                            i += 6 * taken;
                            o += UNIT * taken;
                        }
                        continue;
                    }
                    _ => match unicode_escape(window) {
                        Some(step) => step,
                        None => break,
                    },
                }
            } else if lead < 0x80 {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&window[..8]);
                let word = u64::from_le_bytes(bytes);
                put_bytes::<UNIT>(out, word);
                let mask = word_escape_mask(word) | (word & HIGH_BITS);
                let plain = if mask == 0 {
                    8
                } else {
                    (mask.trailing_zeros() / 8) as usize
                };
                if plain == 0 {
                    break;
                }
                i += plain;
                o += UNIT * plain;
                continue;
            } else {
                match utf8_code(window, 0) {
                    Some(step) => step,
                    None => break,
                }
            };
            let count = put_code::<UNIT>(out, code);
            bits |= code;
            // A pair's code point (0x1D800, 0x10D800...) may end like a surrogate: the whole.
            lone_surrogate |= code & 0xFFFF_F800 == 0xD800;
            i += taken;
            o += UNIT * count;
        }
        if i >= vector_from {
            continue;
        }
        let Some(&byte) = src.get(i) else {
            return Err(WideStop::Refused);
        };
        if byte == b'"' {
            return Ok(Wide {
                closing_quote: i,
                units: o / UNIT,
                bits,
                lone_surrogate,
            });
        }
        let Some(out) = dst.get_mut(o..o + 2 * UNIT) else {
            return Err(WideStop::NoRoom(Progress {
                read: i,
                written: o / UNIT,
                bits,
                lone_surrogate,
            }));
        };
        let (code, taken) = match byte {
            b'\\' => escaped_code(src, i).ok_or(WideStop::Refused)?,
            0..=0x1F => return Err(WideStop::Refused),
            0x20..=0x7F => (u32::from(byte), 1),
            _ => utf8_code(src, i).ok_or(WideStop::Refused)?,
        };
        let count = put_code::<UNIT>(out, code);
        bits |= code;
        lone_surrogate |= code & 0xFFFF_F800 == 0xD800;
        i += taken;
        o += UNIT * count;
    }
}

/// The code point of the escape at `src[at]` (a backslash) and the input it takes; `None`
/// for anything the reader refuses (left to it to name).
#[inline(always)]
fn escaped_code(src: &[u8], at: usize) -> Option<(u32, usize)> {
    if src.get(at + 1) == Some(&b'u') {
        let first = hex4(src, at).ok()?;
        if (0xD800..0xDC00).contains(&first) && src.get(at + 6..at + 8) == Some(b"\\u") {
            let second = hex4(src, at + 6).ok()?;
            if (0xDC00..0xE000).contains(&second) {
                return Some((0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00), 12));
            }
        }
        return Some((first, 6));
    }
    let code = match src.get(at + 1)? {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        _ => return None,
    };
    Some((u32::from(code), 2))
}

/// The values of two runs of four hex digits (the first digit of each the most
/// significant), `None` when a byte is not a hex digit: all eight bytes tested and converted
/// at once, as lanes of a word.
#[inline(always)]
fn hex_digits(digits: [u8; 8]) -> Option<[u16; 2]> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let word = u64::from_le_bytes(digits);
    // In each lane (7 bits, so that no sum carries into the next): `x + (0x80 - lo)` has its
    // top bit set when x >= lo, `x + (0x7F - hi)` when x > hi.
    let in_range =
        |x: u64, lo: u64, hi: u64| (x + ONES * (0x80 - lo)) & !(x + ONES * (0x7F - hi)) & HIGH;
    let digit = in_range(word & LOW7, 0x30, 0x39);
    // Upper-case letters folded onto lower-case ones: only 'A'..'F' land on 'a'..'f'.
    let letter = in_range((word | (ONES * 0x20)) & LOW7, 0x61, 0x66);
    if (digit | letter) != HIGH || word & HIGH != 0 {
        return None;
    }
    // Each lane's value: its low four bits, plus 9 for a letter ('a' and 'A' end in 1).
    let nibbles = (word & (ONES * 0x0F)) + 9 * (letter >> 7);
    // Lanes 0, 2, 4 and 6 take the bytes of the two values, high byte first.
    let bytes = ((nibbles << 4) | (nibbles >> 8)) & 0x00FF_00FF_00FF_00FF;
    let value = |at: u32| (((bytes >> at) & 0xFF) << 8 | ((bytes >> (at + 16)) & 0xFF)) as u16;
    Some([value(0), value(32)])
}

/// The value of one run of four hex digits, read as `hex_digits` reads two, on a 32-bit word
/// (fewer steps for a lone escape than padded to two).
#[inline(always)]
fn hex_digit4(digits: [u8; 4]) -> Option<u16> {
    const ONES: u32 = 0x0101_0101;
    const HIGH: u32 = 0x8080_8080;
    let word = u32::from_le_bytes(digits);
    let in_range =
        |x: u32, lo: u32, hi: u32| (x + ONES * (0x80 - lo)) & !(x + ONES * (0x7F - hi)) & HIGH;
    let digit = in_range(word & 0x7F7F_7F7F, 0x30, 0x39);
    let letter = in_range((word | 0x2020_2020) & 0x7F7F_7F7F, 0x61, 0x66);
    if (digit | letter) != HIGH || word & HIGH != 0 {
        return None;
    }
    let nibbles = (word & 0x0F0F_0F0F) + 9 * (letter >> 7);
    let bytes = ((nibbles << 4) | (nibbles >> 8)) & 0x00FF_00FF;
    Some((((bytes & 0xFF) << 8) | (bytes >> 16)) as u16)
}

/// The payload of a UTF-8 continuation byte, `None` for any other byte.
#[inline(always)]
fn continuation(byte: Option<&u8>) -> Option<u32> {
    byte.filter(|&&b| b & 0xC0 == 0x80)
        .map(|&b| u32::from(b & 0x3F))
}

/// The code point of the UTF-8 character starting at `src[at]` (a byte >= 0x80) and its
/// length; `None` where `std::str::from_utf8` finds an error: a stray continuation byte, a
/// short sequence, an overlong form, a surrogate, a code point beyond U+10FFFF.
#[inline(always)]
fn utf8_code(src: &[u8], at: usize) -> Option<(u32, usize)> {
    let lead = u32::from(*src.get(at)?);
    let next = |k: usize| continuation(src.get(at + k));
    match lead {
        0xC2..=0xDF => Some(((lead & 0x1F) << 6 | next(1)?, 2)),
        0xE0..=0xEF => {
            let code = (lead & 0x0F) << 12 | next(1)? << 6 | next(2)?;
            (code >= 0x800 && !(0xD800..0xE000).contains(&code)).then_some((code, 3))
        }
        0xF0..=0xF4 => {
            let code = (lead & 0x07) << 18 | next(1)? << 12 | next(2)? << 6 | next(3)?;
            (0x10000..0x11_0000).contains(&code).then_some((code, 4))
        }
        _ => None,
    }
}

/// Rewrite the first `units` units of `buf` (`UNIT` bytes each, native-endian, every value
/// below 0x100) in place as one byte each, from its start: code points 64 at a time with
/// AVX-512 where the CPU has it (`narrow_avx512`), then `narrow_in_place`.
pub fn narrow_to_latin1<const UNIT: usize>(buf: &mut [u8], units: usize) {
    let units = units.min(buf.len() / UNIT);
    let narrowed = if UNIT == 4 {
        crate::narrow_avx512::narrow_code_points::<1>(buf, units)
    } else {
        0
    };
    narrow_in_place::<UNIT, 1>(buf, units, narrowed);
}

/// Rewrite the first `units` units of `buf` (`UNIT` bytes each, native-endian, every value
/// below 0x10000) in place as UTF-16 code units (two bytes each, native-endian), from its
/// start: code points 64 at a time with AVX-512 where the CPU has it (`narrow_avx512`), then
/// `narrow_in_place`; nothing to do where the units already are UTF-16.
pub fn narrow_to_utf16<const UNIT: usize>(buf: &mut [u8], units: usize) {
    if UNIT == 4 {
        let units = units.min(buf.len() / 4);
        let narrowed = crate::narrow_avx512::narrow_code_points::<2>(buf, units);
        narrow_in_place::<4, 2>(buf, units, narrowed);
    }
}

/// Rewrite units `done..units` of `buf` (`UNIT` bytes each, native-endian; the first `done`
/// already rewritten, a multiple of 16) in place as their low `OUT` bytes each, native-endian,
/// 16 at a time: a block is read whole before its bytes are written, which end by the block's
/// own start (or are the first block), so nothing unread is overwritten.
fn narrow_in_place<const UNIT: usize, const OUT: usize>(buf: &mut [u8], units: usize, done: usize) {
    const BLOCK: usize = 16;
    const { assert!(OUT < UNIT && OUT <= 2) };
    let units = units.min(buf.len() / UNIT);
    // The unit's low `OUT` bytes: its first ones when little-endian, its last ones otherwise.
    let low = if cfg!(target_endian = "big") {
        UNIT - OUT
    } else {
        0
    };
    let blocks = units / BLOCK;
    for block in done / BLOCK..blocks {
        let mut narrow = [[0u8; OUT]; BLOCK];
        let wide = &buf[UNIT * BLOCK * block..UNIT * BLOCK * (block + 1)];
        for (out, unit) in narrow.iter_mut().zip(wide.chunks_exact(UNIT)) {
            out.copy_from_slice(&unit[low..low + OUT]);
        }
        buf[OUT * BLOCK * block..OUT * BLOCK * (block + 1)].copy_from_slice(narrow.as_flattened());
    }
    for k in BLOCK * blocks..units {
        buf.copy_within(UNIT * k + low..UNIT * k + low + OUT, OUT * k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_string::unescape;
    use crate::unit_counts::tests::read_plainly;

    /// The code points `decode_units::<UNIT>` reads from `body`, through as many `NoRoom` stops
    /// as an output of `room` units (grown by `room` each time) makes: its units as they are
    /// (`UNIT` 4), or joined front to back as CPython joins them (`UNIT` 2).
    fn wide_in<const UNIT: usize>(body: &[u8], room: usize) -> Result<(Vec<u32>, Wide), WideStop> {
        let mut dst = vec![0u8; UNIT * room];
        let mut from = Progress::default();
        loop {
            match decode_units::<UNIT>(body, &mut dst, from) {
                Ok(done) => {
                    let units = &dst[..UNIT * done.units];
                    let codes = if UNIT == 4 {
                        units
                            .chunks_exact(4)
                            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                            .collect()
                    } else {
                        let units: Vec<u16> = units
                            .chunks_exact(2)
                            .map(|c| u16::from_ne_bytes([c[0], c[1]]))
                            .collect();
                        joined_front_to_back(&units)
                    };
                    return Ok((codes, done));
                }
                Err(WideStop::NoRoom(progress)) => {
                    assert!(progress.read >= from.read && progress.written >= from.written);
                    dst.resize(dst.len() + UNIT * room.max(1), 0);
                    from = progress;
                }
                Err(refused) => return Err(refused),
            }
        }
    }

    /// What the UTF-8 path reads: the code points of `unescape`'s output (lone surrogates in
    /// their 3-byte form), or `None` where it or the reader's UTF-8 check refuses.
    fn expected(body: &[u8]) -> Option<(Vec<u32>, usize, bool)> {
        let mut dst = vec![0u8; body.len() + 8];
        let done = unescape(body, &mut dst).ok()?;
        std::str::from_utf8(&body[..done.closing_quote]).ok()?;
        let bytes = &dst[..done.written];
        let mut codes = Vec::new();
        let mut k = 0;
        while k < bytes.len() {
            let (code, len) = match bytes[k] {
                b if b < 0x80 => (u32::from(b), 1),
                b if b < 0xE0 => (u32::from(b & 0x1F) << 6 | u32::from(bytes[k + 1] & 0x3F), 2),
                b if b < 0xF0 => (
                    u32::from(b & 0x0F) << 12
                        | u32::from(bytes[k + 1] & 0x3F) << 6
                        | u32::from(bytes[k + 2] & 0x3F),
                    3,
                ),
                b => (
                    u32::from(b & 0x07) << 18
                        | u32::from(bytes[k + 1] & 0x3F) << 12
                        | u32::from(bytes[k + 2] & 0x3F) << 6
                        | u32::from(bytes[k + 3] & 0x3F),
                    4,
                ),
            };
            codes.push(code);
            k += len;
        }
        Some((codes, done.closing_quote, done.lone_surrogate))
    }

    fn agrees(body: &[u8]) {
        let reference = expected(body);
        for room in [0, 1, 3, 64] {
            for (unit, read) in [(2, wide_in::<2>(body, room)), (4, wide_in::<4>(body, room))] {
                match (read, &reference) {
                    (Ok((codes, done)), Some((want, quote, lone))) => {
                        assert_eq!(&codes, want, "{body:?} in units of {unit}");
                        assert_eq!(done.closing_quote, *quote);
                        assert_eq!(done.lone_surrogate, *lone);
                        let max = codes.iter().copied().max().unwrap_or(0);
                        assert_eq!(done.bits < 0x100, max < 0x100);
                        let astral = codes.iter().filter(|&&c| c >= 0x1_0000).count();
                        let units = codes.len() + if unit == 2 { astral } else { 0 };
                        assert_eq!(done.units, units, "{body:?} in units of {unit}");
                    }
                    (Err(WideStop::Refused), None) => {}
                    (ours, theirs) => {
                        panic!("{body:?} in units of {unit}: {ours:?} against {theirs:?}")
                    }
                }
            }
        }
    }

    /// Bodies of `count` pieces drawn from `pieces` by a fixed xorshift sequence from `seed`.
    fn drawn_bodies<'a>(
        pieces: &'a [&'a [u8]],
        seed: u64,
        count: usize,
    ) -> impl Iterator<Item = Vec<u8>> + 'a {
        let mut state = seed;
        std::iter::from_fn(move || {
            let mut body = Vec::new();
            for _ in 0..count {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                body.extend_from_slice(pieces[(state % pieces.len() as u64) as usize]);
            }
            Some(body)
        })
    }

    /// The same call with the vector step and without: the same result, the same units.
    fn vector_agrees(body: &[u8], room: usize) {
        let run = |vector: bool| {
            let mut dst = vec![0u8; 4 * room];
            let result = decode_units_with::<4>(body, &mut dst, Progress::default(), vector);
            let written = match result {
                Ok(done) => done.units,
                Err(WideStop::NoRoom(progress)) => progress.written,
                Err(WideStop::Refused) => 0,
            };
            dst.truncate(4 * written);
            (result, dst)
        };
        let ((vector, vector_units), (scalar, scalar_units)) = (run(true), run(false));
        assert_eq!(vector_units, scalar_units, "{body:?}");
        // The vector step ORs in the ASCII it writes, which the scalar steps may leave out.
        let comparable = |result: Result<Wide, WideStop>| match result {
            Ok(done) => Ok(Wide {
                bits: done.bits | 0x7F,
                ..done
            }),
            Err(WideStop::NoRoom(progress)) => Err(WideStop::NoRoom(Progress {
                bits: progress.bits | 0x7F,
                ..progress
            })),
            Err(refused) => Err(refused),
        };
        assert_eq!(comparable(vector), comparable(scalar), "{body:?}");
    }

    #[test]
    fn long_bodies_read_the_same_with_the_vector_step_and_without() {
        #[rustfmt::skip]
        let pieces: [&[u8]; 26] = [
            b"a", b"plain words ", "é".as_bytes(), "漢".as_bytes(), "🔐".as_bytes(),
            b"\\\"", b"\\\\", b"\\n", b"\\u00e9", b"\\u00E9", b"\\u03bb\\u03b1",
            b"\\ud83d\\udd10", b"\\uD83D\\uDE00", b"\\ud800", b"\\udc00", b"\\u0000",
            b"\\u12", b"\\uZZZZ", b"\\u+123", b"\x1f", b"\xff", b"\\u6f22\\u5b57 ",
            b"\\udbff\\udfff", b"\\ud83c\\udf89", b"\\uD9A0\\uDCFF", b"\\udc00\\ud800",
        ];
        // Mostly escapes and words, as a server writes them, and every odd piece among them.
        let usual = [
            pieces[1], pieces[8], pieces[10], pieces[11], pieces[21], pieces[23], b" ",
        ];
        for body in drawn_bodies(&usual, 7, 120).take(8) {
            let mut terminated = body.clone();
            terminated.push(b'"');
            for room in [terminated.len(), 100, 300] {
                vector_agrees(&terminated, room);
            }
            agrees(&terminated);
            // And each odd piece spliced in at every few places (every offset in a block, over
            // the bodies), terminated or not.
            for (k, odd) in pieces.iter().enumerate() {
                for at in (k % 5..body.len()).step_by(5) {
                    let mut spliced = body[..at].to_vec();
                    spliced.extend_from_slice(odd);
                    spliced.extend_from_slice(&body[at..]);
                    vector_agrees(&spliced, spliced.len());
                    spliced.push(b'"');
                    vector_agrees(&spliced, spliced.len());
                }
            }
        }
        for body in drawn_bodies(&pieces, 11, 200).take(60) {
            let mut body = body;
            body.push(b'"');
            vector_agrees(&body, body.len());
            agrees(&body);
        }
        // Raw text, as a server that does not escape writes it, with the same odd pieces.
        let raw = [
            pieces[1],
            pieces[2],
            pieces[3],
            pieces[4],
            b" ",
            "Ελλάδα ".as_bytes(),
        ];
        for body in drawn_bodies(&raw, 13, 90).take(6) {
            for (k, odd) in pieces.iter().enumerate() {
                for at in (k % 7..body.len()).step_by(7) {
                    let mut spliced = body[..at].to_vec();
                    spliced.extend_from_slice(odd);
                    spliced.extend_from_slice(&body[at..]);
                    spliced.push(b'"');
                    for room in [spliced.len(), 150] {
                        vector_agrees(&spliced, room);
                    }
                }
            }
        }
    }

    #[test]
    fn reads_what_the_utf8_path_reads() {
        #[rustfmt::skip]
        let pieces: [&[u8]; 24] = [
            b"a", "é".as_bytes(), "漢".as_bytes(), "🔐".as_bytes(), b"\\\"", b"\\\\",
            b"\\/", b"\\b\\f\\n\\r\\t", b"\\u00e9", b"\\u00E9", b"\\ud83d\\ude00",
            b"\\uD83D\\uDE00", b"\\ud800", b"\\udc00", b"\\ud800x", b"\\ud800\\u0041",
            b"\\ud800\\n", b"\\u0000", b"\\ufeff", "\u{feff}".as_bytes(), b"\\u12",
            b"\\uZZZZ", b"\\x", b"\xff",
        ];
        for a in pieces {
            for b in pieces {
                for pad in [0, 1, 7, 8, 9, 17] {
                    let mut body = b"p".repeat(pad);
                    body.extend_from_slice(a);
                    body.extend_from_slice(b);
                    agrees(&body); // unterminated
                    body.push(b'"');
                    agrees(&body);
                    body.extend_from_slice(b"tail\"");
                    agrees(&body);
                }
            }
        }
    }

    #[test]
    fn utf8_is_checked_as_strictly_as_from_utf8() {
        // Every lead byte with every second byte, then valid or invalid continuations.
        for lead in 0x80u8..=0xFF {
            for second in 0u8..=0xFF {
                for tail in [&b""[..], b"\x80", b"\xbf\x80", b"\x80\xbf", b"a", b"\x80a"] {
                    let mut body = vec![lead, second];
                    body.extend_from_slice(tail);
                    body.push(b'"');
                    agrees(&body);
                    // After raw text, in the middle of a block of the vector step.
                    let mut after_text = "wörld Ελλάδα 漢字 🔐 ".repeat(4).into_bytes();
                    after_text.extend_from_slice(&body);
                    after_text.extend_from_slice("wörld Ελλάδα 漢字 🔐 ".repeat(4).as_bytes());
                    after_text.push(b'"');
                    vector_agrees(&after_text, after_text.len());
                }
            }
        }
    }

    #[test]
    fn the_estimates_are_exact_for_text_the_decoder_reads_whole() {
        for text in [
            "",
            "abc",
            "é漢🔐",
            "\\u00e9\\ud83d\\ude00x",
            "a\\u4e2d",
            "🔐\\ud83d\\udd10",
            "\\uD83D\\uDE00\\uDBFF\\uDFFF\\uD800\\uDC00",
            "\\uDa00\\uDc01 \\ud9AB\\udCDE",
            "a\\u4e2d\\ud7ff\\ue000\\uD7FF",
            "line\\nnext\\r\\t\\\"quoted\\\" \\/ \\b\\f🔐\\ud83d\\ude00",
            // Escaped backslashes: the `u`, `ud83d` after an even run is text.
            "\\\\u00e9",
            "\\\\\\u00e9\\\\\\\\ud83d\\\\\\\\\\ud83d\\ude00",
            "C:\\\\Users\\\\new\\\\ü\\\\🔐",
        ] {
            let body = format!("{text}\"");
            let (_, points) = wide_in::<4>(body.as_bytes(), 64).unwrap();
            let (_, units) = wide_in::<2>(body.as_bytes(), 64).unwrap();
            let counts = unit_counts(text.as_bytes());
            assert_eq!(counts, read_plainly(text.as_bytes()), "{text}");
            assert_eq!(counts.code_points(), points.units, "{text}");
            assert_eq!(counts.utf16_units(), units.units, "{text}");
            let wide_units = if UNIT_BYTES == 4 {
                points.units
            } else {
                units.units
            };
            assert_eq!(estimated_wide_units(text.as_bytes()), wide_units, "{text}");
            assert!(units.units <= most_units(text.len(), &Progress::default()));
        }
        // A lone high surrogate's escape makes the code points short by one (`NoRoom`, then
        // more room), not the UTF-16 units.
        let lone = "\\ud83dx";
        let body = format!("{lone}\"");
        let (_, points) = wide_in::<4>(body.as_bytes(), 64).unwrap();
        let (_, units) = wide_in::<2>(body.as_bytes(), 64).unwrap();
        assert_eq!(unit_counts(lone.as_bytes()).code_points() + 1, points.units);
        assert_eq!(unit_counts(lone.as_bytes()).utf16_units(), units.units);
    }

    #[test]
    fn hex_digits_read_as_the_table_reads_them() {
        let table = |d: &[u8]| hex4(&[b'\\', b'u', d[0], d[1], d[2], d[3]], 0).ok();
        let check = |digits: [u8; 8]| {
            let ours = hex_digits(digits).map(|pair| pair.map(u32::from));
            let theirs = table(&digits[..4])
                .zip(table(&digits[4..]))
                .map(|(a, b)| [a, b]);
            assert_eq!(ours, theirs, "{digits:?}");
            let first = [digits[0], digits[1], digits[2], digits[3]];
            assert_eq!(hex_digit4(first).map(u32::from), table(&first), "{first:?}");
        };
        for lane in 0..8 {
            for byte in 0..=255u8 {
                for fill in [b'0', b'f', b'A', b'9'] {
                    let mut digits = [fill; 8];
                    digits[lane] = byte;
                    check(digits);
                }
            }
        }
        const BYTES: &[u8; 30] = b"0123456789abcdefABCDEFgG/:@`\x80\xff";
        let mut state = 0x9E37_79B9u64;
        for _ in 0..200_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            check(
                state
                    .to_le_bytes()
                    .map(|b| BYTES[usize::from(b) % BYTES.len()]),
            );
        }
    }

    #[test]
    fn the_counts_hold_at_every_length_over_many_blocks() {
        let unit = "ab\\u00e9é漢🔐\\\\u".as_bytes();
        for len in 0..(16 * 255 * 2 + 40) {
            let body: Vec<u8> = unit.iter().cycle().take(len).copied().collect();
            assert_eq!(unit_counts(&body), read_plainly(&body), "{len}");
        }
    }

    #[test]
    fn ascii_only_says_yes_exactly_for_ascii_text_and_low_escapes() {
        let cases: [(&[u8], bool); 19] = [
            (b"plain", true),
            (b"a\\nb\\t\\\"\\\\", true),
            (b"\\u0041\\u007F\\u0000", true),
            (b"\\u0080", false),
            (b"x\\u00e9", false),
            (b"\\u4E2D", false),
            (b"\\ud800", false),
            ("\u{e9}".as_bytes(), false),
            (b"\\n\\u00e9", false),
            // An escaped backslash before `u00e9` is text, not an escape.
            (b"\\\\u00e9", true),
            (b"\\\\\\u00e9", false),
            (b"\\u00", false),
            (b"\\", true),
            // Raw non-ASCII text before, between and after escapes, and as the escaped byte.
            ("\\n\\t\u{e9}x".as_bytes(), false),
            ("a\u{e9}\\n".as_bytes(), false),
            ("\\n\u{e9}\\n".as_bytes(), false),
            ("\\\u{e9}".as_bytes(), false),
            (b"\\u004\xff", false),
            (b"\\n\\\"\\/tail\x7f", true),
        ];
        for (body, ascii) in cases {
            assert_eq!(ascii_only(body), ascii, "{body:?}");
        }
    }

    /// What bodies are filled with before a piece: text, `\n` escapes, escaped backslashes,
    /// and odd backslash runs.
    const FILLERS: [&[u8]; 5] = [b"a", b"\\n", b"\\\\", b"\\\\\\", b"\\\\\\n"];

    #[test]
    fn ascii_only_answers_as_a_whole_pass_would_across_its_blocks() {
        // The answer of one `is_ascii` over the body and one escape scan after it.
        let whole = |body: &[u8]| {
            let mut k = 0;
            while k < body.len() {
                if body[k] == b'\\' {
                    let hex = body.get(k + 2..k + 5).unwrap_or_default();
                    if body.get(k + 1) == Some(&b'u') && !matches!(hex, [b'0', b'0', b'0'..=b'7']) {
                        return false;
                    }
                    k += 2;
                } else {
                    k += 1;
                }
            }
            body.is_ascii()
        };
        let pieces: [&[u8]; 8] = [
            b"\\u00e9",
            b"\\\\u00e9",
            b"\\u0041",
            b"\\n",
            b"\\",
            b"\xc3\xa9",
            b"\\\xc3\xa9",
            b"\\u00",
        ];
        for (piece, filler) in pieces.iter().flat_map(|p| FILLERS.map(|f| (p, f))) {
            for at in (4096 - 8..4096 + 4).chain(8192 - 3..8192 + 1) {
                // Filled up to `at` with text, or with escapes whose backslashes straddle the
                // blocks (an odd run at a block's end escapes the next block's first byte).
                let mut body: Vec<u8> = filler.iter().copied().cycle().take(at).collect();
                body.extend_from_slice(piece);
                body.extend_from_slice(b"tail");
                assert_eq!(
                    ascii_only(&body),
                    whole(&body),
                    "{piece:?} at {at} {filler:?}"
                );
                body.truncate(at + piece.len());
                assert_eq!(
                    ascii_only(&body),
                    whole(&body),
                    "{piece:?} at {at}, at the end"
                );
            }
        }
    }

    /// The code points of UTF-16 code units as Python's `json` reads escapes: front to back, a
    /// high surrogate followed by a low one is one character, any other surrogate alone.
    fn joined_front_to_back(units: &[u16]) -> Vec<u32> {
        let mut codes = Vec::new();
        let mut k = 0;
        while k < units.len() {
            let (unit, next) = (u32::from(units[k]), units.get(k + 1).map(|&u| u32::from(u)));
            match next {
                Some(low) if unit & 0xFC00 == 0xD800 && low & 0xFC00 == 0xDC00 => {
                    codes.push(0x1_0000 + ((unit - 0xD800) << 10) + (low - 0xDC00));
                    k += 2;
                }
                _ => {
                    codes.push(unit);
                    k += 1;
                }
            }
        }
        codes
    }

    #[test]
    fn narrowing_writes_one_byte_a_unit_of_either_width() {
        fn narrowed<const UNIT: usize>(values: &[u32]) -> Vec<u8> {
            let mut buf: Vec<u8> = values
                .iter()
                .flat_map(|&v| {
                    if UNIT == 4 {
                        v.to_ne_bytes().to_vec()
                    } else {
                        (v as u16).to_ne_bytes().to_vec()
                    }
                })
                .collect();
            narrow_to_latin1::<UNIT>(&mut buf, values.len());
            buf.truncate(values.len());
            buf
        }
        // Around the blocks of 16, every Latin-1 value.
        // And of 64, the vector step's for code points.
        for len in [
            0, 1, 5, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 256, 300, 1000,
        ] {
            let values: Vec<u32> = (0..len as u32).map(|k| (k * 7) % 256).collect();
            let want: Vec<u8> = values.iter().map(|&v| v as u8).collect();
            assert_eq!(narrowed::<2>(&values), want, "{len}");
            assert_eq!(narrowed::<4>(&values), want, "{len}");
        }
    }

    #[test]
    fn narrowing_to_utf16_writes_two_bytes_a_code_point() {
        // Around the blocks of 16, values of every byte in either half of a unit.
        for len in [0, 1, 2, 15, 16, 17, 31, 32, 33, 64, 65, 1000] {
            let values: Vec<u16> = (0..len as u32)
                .map(|k| ((k * 0x3D09 + 0x7F) % 0x1_0000) as u16)
                .collect();
            let mut buf: Vec<u8> = values
                .iter()
                .flat_map(|&v| u32::from(v).to_ne_bytes())
                .collect();
            let untouched = buf[2 * len..].to_vec();
            narrow_to_utf16::<4>(&mut buf, len);
            let units: Vec<u16> = buf[..2 * len]
                .chunks_exact(2)
                .map(|c| u16::from_ne_bytes([c[0], c[1]]))
                .collect();
            assert_eq!(units, values, "{len}");
            // Only the UTF-16 is written: what lies past it is as it was (or unread input).
            assert_eq!(buf[4 * len..], untouched[2 * len..], "{len}");
        }
        // UTF-16 units stay as they are.
        let mut units = vec![0x12, 0x34, 0x56, 0x78];
        narrow_to_utf16::<2>(&mut units, 2);
        assert_eq!(units, [0x12, 0x34, 0x56, 0x78]);
    }

    #[test]
    fn units_of_each_width_hold_each_kind_of_character() {
        // Escapes (a pair, lone surrogates of each kind), raw UTF-8 of each length.
        let body = "\\ud83d\\udd10\\udc00\\ud800\\u0041\\udbff\\udfff\\ud800é漢🔐A\"";
        let want = [
            0x1F510, 0xDC00, 0xD800, 0x41, 0x10FFFF, 0xD800, 0xE9, 0x6F22, 0x1F510, 0x41,
        ];
        let (codes, done) = wide_in::<4>(body.as_bytes(), 64).unwrap();
        assert_eq!(codes, want);
        assert_eq!(done.units, want.len());
        assert!(done.lone_surrogate);
        let (codes, done) = wide_in::<2>(body.as_bytes(), 64).unwrap();
        assert_eq!(codes, want);
        assert_eq!(
            done.units,
            want.len() + 3,
            "three characters beyond the BMP, two units each"
        );
    }
}

#[cfg(test)]
mod timing {
    //! `cargo test --release --no-default-features --lib json_wide::timing -- --ignored --nocapture`
    use super::*;

    #[test]
    #[ignore = "timing, by hand"]
    fn time_decode_wide_by_script() {
        let texts = [
            ("ascii", "the quick brown fox jumps over "),
            ("latin-1", "déjà vu à la française, naïve "),
            ("greek", "Ελλάδα καλημέρα κόσμε "),
            ("cjk", "漢字仮名交じり文の例です"),
            ("emoji", "🔐🔑🗝🔒"),
            ("mixed", "héllo wörld Ελλάδα 漢字 🔐 "),
            ("paths", "C:\\Users\\me\\é "),
        ];
        let only = std::env::var("TIMING_TEXT").ok();
        for (name, unit) in texts {
            if only.as_deref().is_some_and(|only| only != name) {
                continue;
            }
            let text = unit.repeat((1 << 20) / unit.len());
            for escaped in [false, true] {
                if std::env::var("TIMING_ESCAPED").is_ok_and(|only| only != escaped.to_string()) {
                    continue;
                }
                let mut body: Vec<u8> = if escaped {
                    text.chars()
                        .flat_map(|c| {
                            if c == '\\' {
                                b"\\\\".to_vec()
                            } else if c.is_ascii() {
                                vec![c as u8]
                            } else {
                                let mut units = [0u16; 2];
                                c.encode_utf16(&mut units)
                                    .iter()
                                    .flat_map(|u| format!("\\u{u:04x}").into_bytes())
                                    .collect()
                            }
                        })
                        .collect()
                } else {
                    text.replace('\\', "\\\\").into_bytes()
                };
                body.push(b'"');
                let chars = text.chars().count();
                // Room for the UTF-16 code units, 4 bytes each (their count bounds the code
                // points').
                let mut dst = vec![0u8; 8 * chars + 64];
                let best = |f: &mut dyn FnMut()| crate::timing::best_of(30, f);
                let points = best(&mut || {
                    std::hint::black_box(
                        decode_units::<4>(&body, &mut dst, Progress::default()).unwrap(),
                    );
                });
                let utf16 = best(&mut || {
                    std::hint::black_box(
                        decode_units::<2>(&body, &mut dst, Progress::default()).unwrap(),
                    );
                });
                let estimate = best(&mut || {
                    std::hint::black_box(estimated_wide_units(&body));
                });
                let levels: Vec<String> = crate::unit_counts::tests::levels()
                    .into_iter()
                    .map(|(level, count)| {
                        let took = best(&mut || {
                            std::hint::black_box(count(&body));
                        });
                        format!("{level} {took:?}")
                    })
                    .collect();
                let pick = best(&mut || {
                    std::hint::black_box(ascii_only(&body));
                });
                println!(
                    "{name:8} escaped={escaped:5} {} bytes {chars} chars: code points {points:?} UTF-16 {utf16:?} estimate {estimate:?} (by level: {}) ascii_only {pick:?}",
                    body.len(),
                    levels.join(", ")
                );
            }
        }
    }
}
