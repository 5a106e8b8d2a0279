//! A JSON string body decoded straight to UTF-16 code units, from which the reader builds a
//! Python `str` with one of CPython's fast stable-ABI constructors (`pystr`) instead of its
//! UTF-8 decoder, which is slow on mixed-script text.
//!
//! A server that escapes every non-ASCII character (Python's `json.dumps`) writes `\uXXXX`:
//! a UTF-16 code unit already (a surrogate pair already the pair), with no UTF-8 to pack and
//! unpack on the way. Raw UTF-8 between the escapes is decoded here too, as strictly as
//! `std::str::from_utf8` checks it. Anything the strict reader refuses, or might, stops the
//! decoder (`Refused`): the reader then reads the string the way it always has, which names
//! the error.
//!
//! UTF-16 rather than code points: an escape already is its code unit, with no pair to join on
//! the hot path. Where CPython takes its characters as 4-byte `wchar_t` (everywhere but
//! Windows) they are then widened in place (`widen_in_place`), in room the reader keeps behind
//! the units. A high surrogate unit is followed by a low one exactly where Python's `json`
//! reads a pair (a high surrogate escape followed by a low one, or a raw character beyond the
//! BMP); every other surrogate unit is a lone surrogate.

#![forbid(unsafe_code)]

use crate::json_scan::word_escape_mask;
use crate::json_string::{hex4, unicode_escape};

/// How far a decoding got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes read.
    pub read: usize,
    /// UTF-16 code units written.
    pub written: usize,
    /// The OR of the code units written (ASCII ones copied 8 at a time left out: they change
    /// nothing): below 0x100 exactly when every character is Latin-1.
    pub bits: u16,
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
    /// UTF-16 code units written (2 bytes each, little-endian).
    pub units: usize,
    /// The OR of the code units (see `Progress`).
    pub bits: u16,
    /// Whether a `\uXXXX` escape gave a lone surrogate.
    pub lone_surrogate: bool,
}

const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// A room estimate for the UTF-16 code units of the string body `body` (from just after its
/// opening quote to its closing quote): one per byte that starts a UTF-8 character and one
/// more per 4-byte character, less five per `\u` (whose six bytes give one unit). Exact for
/// text without other escapes; a `\\u` (an escaped backslash before a `u`) makes it short,
/// which `decode_wide` reports as `NoRoom`.
pub fn estimated_units(body: &[u8]) -> usize {
    // Per-lane byte counters over 16 bytes at a time (and the byte after each), which the
    // compiler turns into vector compares and adds; summed every 127 steps, before a lane
    // could overflow (a step adds up to 2: a lane of 4-byte leads, as in emoji text, reaches
    // 254); the last few bytes one by one.
    const LANES: usize = 16;
    const STEPS: usize = 127;
    let count = |byte: u8, next: u8| {
        let unit = u8::from((byte as i8) >= -64) + u8::from(byte >= 0xF0);
        let escape = u8::from(byte == b'\\') & u8::from(next == b'u');
        (unit, escape)
    };
    let (mut units, mut escapes) = (0usize, 0usize);
    let whole = body.len().saturating_sub(1) / LANES * LANES;
    let (bytes, nexts) = (&body[..whole], body.get(1..whole + 1).unwrap_or_default());
    for (block, next_block) in bytes.chunks(LANES * STEPS).zip(nexts.chunks(LANES * STEPS)) {
        let (mut lane_units, mut lane_escapes) = ([0u8; LANES], [0u8; LANES]);
        for (chunk, next) in block
            .chunks_exact(LANES)
            .zip(next_block.chunks_exact(LANES))
        {
            for k in 0..LANES {
                let (unit, escape) = count(chunk[k], next[k]);
                lane_units[k] = lane_units[k].wrapping_add(unit);
                lane_escapes[k] = lane_escapes[k].wrapping_add(escape);
            }
        }
        units += lane_units.iter().map(|&n| usize::from(n)).sum::<usize>();
        escapes += lane_escapes.iter().map(|&n| usize::from(n)).sum::<usize>();
    }
    for (k, &byte) in body.iter().enumerate().skip(whole) {
        let (unit, escape) = count(byte, body.get(k + 1).copied().unwrap_or(0));
        units += usize::from(unit);
        escapes += usize::from(escape);
    }
    units.saturating_sub(5 * escapes)
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

/// The UTF-16 code units of `code` (two for a code point beyond the BMP) and how many.
#[inline(always)]
fn utf16(code: u32) -> ([u8; 4], usize) {
    if code < 0x1_0000 {
        let unit = (code as u16).to_le_bytes();
        ([unit[0], unit[1], 0, 0], 1)
    } else {
        let high = (0xD800 + ((code - 0x1_0000) >> 10) as u16).to_le_bytes();
        let low = (0xDC00 + (code & 0x3FF) as u16).to_le_bytes();
        ([high[0], high[1], low[0], low[1]], 2)
    }
}

/// Decode the JSON string body in `src` (starting just after its opening quote) as UTF-16
/// code units, little-endian, into `dst`, going on from `from` (`Progress::default()` for a
/// fresh start; a `NoRoom`'s progress, with its units copied into a bigger `dst`, to go on).
/// The same text Python's `json` reads: a high surrogate escape followed by a low one is one
/// character, any other surrogate escape stands alone.
#[inline(never)]
pub fn decode_wide(src: &[u8], dst: &mut [u8], from: Progress) -> Result<Wide, WideStop> {
    let (mut i, mut o) = (from.read, from.written * 2);
    let (mut bits, mut lone_surrogate) = (from.bits, from.lone_surrogate);
    loop {
        // The common steps on a fixed window of input and room for 8 code units: a
        // well-formed `\u` escape (or pair), an ASCII run 8 bytes at a time (all 8 widened,
        // those before the first byte that needs attention kept), a UTF-8 character. Anything
        // else, and the last bytes of the input, take the careful step below.
        while let (Some(window), Some(out)) = (src.get(i..i + 12), dst.get_mut(o..o + 16)) {
            let window: &[u8; 12] = window.try_into().unwrap_or(&[b'\\'; 12]);
            let out: &mut [u8; 16] = match out.try_into() {
                Ok(out) => out,
                Err(_) => break,
            };
            let lead = window[0];
            let (code, taken) = if lead == b'\\' {
                // A `\u` escape of a character in the BMP, nearly every escape of a server
                // that escapes non-ASCII text, in a few branch-free steps, two at a time where
                // two follow each other (words in a non-Latin script); a surrogate pair the
                // same way (its two escapes already are its two code units); a lone surrogate
                // by the general rule.
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
                        out[..2].copy_from_slice(&first.to_le_bytes());
                        out[2..4].copy_from_slice(&second.to_le_bytes());
                        bits |= first | second;
                        i += 6 * taken;
                        o += 2 * taken;
                        continue;
                    }
                    _ => match unicode_escape(window) {
                        Some(step) => step,
                        None => break,
                    },
                }
            } else if lead < 0x80 {
                let mut word = [0u8; 8];
                word.copy_from_slice(&window[..8]);
                let word = u64::from_le_bytes(word);
                out[..8].copy_from_slice(&widened(word).to_le_bytes());
                out[8..].copy_from_slice(&widened(word >> 32).to_le_bytes());
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
                o += 2 * plain;
                continue;
            } else {
                match utf8_code(window, 0) {
                    Some(step) => step,
                    None => break,
                }
            };
            let (units, count) = utf16(code);
            out[..4].copy_from_slice(&units);
            bits |= u16::from_le_bytes([units[0], units[1]]);
            // A pair's code point (0x1D800, 0x10D800...) may end like a surrogate: the whole.
            lone_surrogate |= code & 0xFFFF_F800 == 0xD800;
            i += taken;
            o += 2 * count;
        }
        let Some(&byte) = src.get(i) else {
            return Err(WideStop::Refused);
        };
        if byte == b'"' {
            return Ok(Wide {
                closing_quote: i,
                units: o / 2,
                bits,
                lone_surrogate,
            });
        }
        let Some(out) = dst.get_mut(o..o + 4) else {
            return Err(WideStop::NoRoom(Progress {
                read: i,
                written: o / 2,
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
        let (units, count) = utf16(code);
        out.copy_from_slice(&units);
        bits |= u16::from_le_bytes([units[0], units[1]]);
        lone_surrogate |= code & 0xFFFF_F800 == 0xD800;
        i += taken;
        o += 2 * count;
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

/// The low four bytes of `word` as four little-endian code units (a zero byte after each).
#[inline(always)]
fn widened(word: u64) -> u64 {
    let pairs = (word & 0xFFFF_FFFF | (word & 0xFFFF_FFFF) << 16) & 0x0000_FFFF_0000_FFFF;
    (pairs | pairs << 8) & 0x00FF_00FF_00FF_00FF
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

/// The code unit at index `k` of `buf` (2 little-endian bytes each).
#[inline(always)]
fn unit_at(buf: &[u8], k: usize) -> u16 {
    let unit: [u8; 2] = buf
        .get(2 * k..2 * k + 2)
        .and_then(|unit| unit.try_into().ok())
        .unwrap_or([0; 2]);
    u16::from_le_bytes(unit)
}

/// Rewrite the first `units` code units of `buf` (all below 0x100) in place as one byte each,
/// from its start: 16 at a time, read into a block before the block's bytes are written, which
/// end by the block's own start (or are the first block), so nothing unread is overwritten.
pub fn narrow_to_latin1(buf: &mut [u8], units: usize) {
    let units = units.min(buf.len() / 2);
    let blocks = units / 16;
    for block in 0..blocks {
        let mut wide = [0u8; 32];
        wide.copy_from_slice(&buf[32 * block..32 * block + 32]);
        let mut narrow = [0u8; 16];
        for (byte, unit) in narrow.iter_mut().zip(wide.chunks_exact(2)) {
            *byte = unit[0];
        }
        buf[16 * block..16 * block + 16].copy_from_slice(&narrow);
    }
    for k in 16 * blocks..units {
        buf[k] = unit_at(buf, k) as u8;
    }
}

/// Rewrite the first `units` code units of `buf` (UTF-16, little-endian) in place as code
/// points, native-endian 4 bytes each (a high surrogate followed by a low one joined, any other
/// surrogate kept as it is), ending at byte `4 * units`; the byte range they fill, or `None`
/// when `buf` is shorter than that.
///
/// Back to front: the code points of units `k..` fill at most `4 * (units - k)` bytes below the
/// end, so they never reach the units below `k` (bytes `..2 * k`) still to be read. Units are
/// widened 8 at a time (vector moves), and those above a block's highest surrogate written
/// whole; a surrogate (joined with the high one below it, if any) is a step of its own.
/// CPython then builds the `str` from them with one allocation of its exact size
/// (`PyUnicode_FromWideChar`), where its UTF-16 decoder allocates for the units, widens the
/// kind as it meets wider characters and shrinks at the end: a fresh `mmap` and a page fault
/// per 4 KiB on every megabyte-sized string.
pub fn widen_in_place(buf: &mut [u8], units: usize) -> Option<std::ops::Range<usize>> {
    const BLOCK: usize = 8;
    let end = units.checked_mul(4)?;
    if buf.len() < end {
        return None;
    }
    // Units `k..units` are read; their code points fill `out..end`, and `out >= 4 * k`.
    let (mut k, mut out) = (units, end);
    while k > 0 {
        if k >= BLOCK {
            let from = 2 * (k - BLOCK);
            let mut narrow = [0u8; 2 * BLOCK];
            narrow.copy_from_slice(&buf[from..from + 2 * BLOCK]);
            let mut wide = [0u8; 4 * BLOCK];
            let mut surrogates = false;
            for (unit, code) in narrow.chunks_exact(2).zip(wide.chunks_exact_mut(4)) {
                let unit = u16::from_le_bytes([unit[0], unit[1]]);
                surrogates |= unit & 0xF800 == 0xD800;
                code.copy_from_slice(&u32::from(unit).to_ne_bytes());
            }
            if !surrogates {
                buf[out - 4 * BLOCK..out].copy_from_slice(&wide);
                (k, out) = (k - BLOCK, out - 4 * BLOCK);
                continue;
            }
            let plain = plain_units_on_top(&narrow);
            buf[out - 4 * plain..out].copy_from_slice(&wide[4 * (BLOCK - plain)..]);
            (k, out) = (k - plain, out - 4 * plain);
        }
        // One character: a surrogate (with the high one below it, for a low one), or one of
        // the last few units.
        let unit = u32::from(unit_at(buf, k - 1));
        let high = if k >= 2 {
            u32::from(unit_at(buf, k - 2))
        } else {
            0
        };
        let code = if unit & 0xFC00 == 0xDC00 && high & 0xFC00 == 0xD800 {
            k -= 2;
            0x1_0000 + ((high - 0xD800) << 10) + (unit - 0xDC00)
        } else {
            k -= 1;
            unit
        };
        buf[out - 4..out].copy_from_slice(&code.to_ne_bytes());
        out -= 4;
    }
    Some(out..end)
}

/// How many of the code units in `block` (little-endian) lie above its highest surrogate.
#[inline(never)]
fn plain_units_on_top(block: &[u8]) -> usize {
    block
        .chunks_exact(2)
        .rev()
        .take_while(|unit| unit[1] & 0xF8 != 0xD8)
        .count()
}

/// Rewrite the first `units` code units of `buf` from little-endian to native-endian in place
/// (nothing to do on a little-endian machine).
pub fn utf16_to_native(buf: &mut [u8], units: usize) {
    if cfg!(target_endian = "big") {
        for unit in buf.chunks_exact_mut(2).take(units) {
            unit.swap(0, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_string::unescape;

    /// The code points `decode_wide` reads from `body`, through as many `NoRoom` stops as an
    /// output of `room` code points (grown by `room` each time) makes.
    fn wide(body: &[u8], room: usize) -> Result<(Vec<u32>, Wide), WideStop> {
        let mut dst = vec![0u8; 2 * room];
        let mut from = Progress::default();
        loop {
            match decode_wide(body, &mut dst, from) {
                Ok(done) => {
                    let mut ucs4 = dst[..2 * done.units].to_vec();
                    ucs4.resize(4 * done.units, 0);
                    let chars = widen_in_place(&mut ucs4, done.units).expect("room");
                    let codes = ucs4[chars]
                        .chunks_exact(4)
                        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    return Ok((codes, done));
                }
                Err(WideStop::NoRoom(progress)) => {
                    assert!(progress.read >= from.read && progress.written >= from.written);
                    dst.resize(dst.len() + 2 * room.max(1), 0);
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
            match (wide(body, room), &reference) {
                (Ok((codes, done)), Some((want, quote, lone))) => {
                    assert_eq!(&codes, want, "{body:?}");
                    assert_eq!(done.closing_quote, *quote);
                    assert_eq!(done.lone_surrogate, *lone);
                    let max = codes.iter().copied().max().unwrap_or(0);
                    assert_eq!(done.bits < 0x100, max < 0x100);
                    let astral = codes.iter().filter(|&&c| c >= 0x1_0000).count();
                    assert_eq!(done.units, codes.len() + astral);
                }
                (Err(WideStop::Refused), None) => {}
                (ours, theirs) => panic!("{body:?}: {ours:?} against {theirs:?}"),
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
                }
            }
        }
    }

    #[test]
    fn the_estimate_is_exact_without_other_escapes_and_never_beyond_the_bound() {
        for text in [
            "",
            "abc",
            "é漢🔐",
            "\\u00e9\\ud83d\\ude00x",
            "a\\u4e2d",
            "🔐\\ud83d\\udd10",
        ] {
            let body = format!("{text}\"");
            let (_, done) = wide(body.as_bytes(), 64).unwrap();
            assert_eq!(estimated_units(text.as_bytes()), done.units, "{text}");
            assert!(done.units <= most_units(text.len(), &Progress::default()));
        }
        // Escaped backslashes before a `u` make it short.
        assert_eq!(estimated_units(b"\\\\u00e9"), 2);
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
    fn a_word_widens_to_code_units() {
        let word = u64::from_le_bytes(*b"abcdefgh");
        assert_eq!(widened(word).to_le_bytes(), *b"a\0b\0c\0d\0");
        assert_eq!(widened(word >> 32).to_le_bytes(), *b"e\0f\0g\0h\0");
        assert_eq!(widened(u64::MAX), 0x00FF_00FF_00FF_00FF);
    }

    #[test]
    fn the_estimate_counts_every_byte_at_every_length() {
        let unit = "ab\\u00e9é漢🔐\\\\u".as_bytes();
        for len in 0..(16 * 255 * 2 + 40) {
            let body: Vec<u8> = unit.iter().cycle().take(len).copied().collect();
            let starts = body.iter().filter(|&&b| (b as i8) >= -64).count();
            let fours = body.iter().filter(|&&b| b >= 0xF0).count();
            let escapes = body.windows(2).filter(|pair| pair == b"\\u").count();
            let plain = (starts + fours).saturating_sub(5 * escapes);
            assert_eq!(estimated_units(&body), plain, "{len}");
        }
    }

    #[test]
    fn the_estimate_holds_where_every_byte_of_a_lane_counts_twice() {
        // Text of 4-byte characters puts a lead byte (counted twice) in every 4th lane at
        // every step; invalid bytes above 0xF0 do the same in every lane.
        let plain = |body: &[u8]| {
            let starts = body.iter().filter(|&&b| (b as i8) >= -64).count();
            let fours = body.iter().filter(|&&b| b >= 0xF0).count();
            let escapes = body.windows(2).filter(|pair| pair == b"\\u").count();
            (starts + fours).saturating_sub(5 * escapes)
        };
        let units: [&[u8]; 4] = ["🔐".as_bytes(), "🔐🔑".as_bytes(), b"\xf4\xff", b"\xff"];
        for unit in units {
            for len in [
                16 * 127,
                16 * 128 + 1,
                16 * 255 + 1,
                16 * 256 + 3,
                16 * 255 * 3 + 7,
            ] {
                let mut body: Vec<u8> = unit.iter().cycle().take(len).copied().collect();
                body.extend_from_slice(b"\\n");
                assert_eq!(estimated_units(&body), plain(&body), "{unit:?} {len}");
            }
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

    /// The code points `widen_in_place` makes of `units` little-endian code units in `src`, in
    /// a buffer of exactly the room it needs.
    fn widened_in_place(src: &[u8], units: usize) -> Vec<u32> {
        let mut buf = src[..2 * units].to_vec();
        buf.resize(4 * units, 0xAA);
        let chars = widen_in_place(&mut buf, units).expect("room");
        assert_eq!(chars.end, 4 * units);
        buf[chars]
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
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
    fn widening_in_place_joins_as_read_front_to_back() {
        // Every length around the 8-unit blocks, with surrogates (paired, lone, runs of highs
        // or lows) at every place a block may start or end, from a fixed pseudo-random stream.
        let kinds = [
            0x41u16, 0xE9, 0x3B1, 0x6F22, 0xFFFF, 0xD83D, 0xDD10, 0xD800, 0xDFFF,
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..70 {
            for _ in 0..200 {
                let units: Vec<u16> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        // Mostly plain text, so that whole blocks occur too.
                        let pick = (state >> 32) as usize % (3 * kinds.len());
                        kinds.get(pick).copied().unwrap_or(0x20 + (pick as u16))
                    })
                    .collect();
                let src: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
                assert_eq!(
                    widened_in_place(&src, len),
                    joined_front_to_back(&units),
                    "{units:x?}"
                );
            }
        }
    }

    #[test]
    fn widening_in_place_wants_four_bytes_a_unit() {
        let mut buf = vec![0x41u8, 0, 0x42, 0, 0, 0, 0];
        assert_eq!(widen_in_place(&mut buf, 2), None);
        assert_eq!(buf, [0x41, 0, 0x42, 0, 0, 0, 0], "nothing written");
        let mut buf = vec![0x41u8, 0, 0x42, 0, 0, 0, 0, 0];
        assert_eq!(widen_in_place(&mut buf, 2), Some(0..8));
        assert_eq!(widen_in_place(&mut [], 0), Some(0..0));
        assert_eq!(widen_in_place(&mut buf, usize::MAX), None);
    }

    #[test]
    fn narrowing_and_joining_write_each_form() {
        let units = [0x41u16, 0xE9, 0xFF, 0x00, 0x7F];
        let mut buf: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
        narrow_to_latin1(&mut buf, 5);
        assert_eq!(&buf[..5], &[0x41, 0xE9, 0xFF, 0x00, 0x7F]);
        let long: Vec<u16> = (0..100u16).map(|k| k * 2).collect();
        let mut buf: Vec<u8> = long.iter().flat_map(|u| u.to_le_bytes()).collect();
        narrow_to_latin1(&mut buf, 100);
        assert_eq!(
            buf[..100].to_vec(),
            long.iter().map(|&u| u as u8).collect::<Vec<_>>()
        );
        // A pair joined; a lone high (before a high, at the end) or low surrogate kept.
        let units = [
            0xD83Du16, 0xDD10, 0x41, 0xDC00, 0xD800, 0xDBFF, 0xDFFF, 0xD800,
        ];
        let src: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
        assert_eq!(
            widened_in_place(&src, units.len()),
            [0x1F510, 0x41, 0xDC00, 0xD800, 0x10FFFF, 0xD800]
        );
        let mut native = src.clone();
        utf16_to_native(&mut native, units.len());
        let back: Vec<u16> = native
            .chunks_exact(2)
            .map(|u| u16::from_ne_bytes([u[0], u[1]]))
            .collect();
        assert_eq!(back, units);
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
                            if c.is_ascii() {
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
                    text.as_bytes().to_vec()
                };
                body.push(b'"');
                let chars = text.chars().count();
                let mut dst = vec![0u8; 4 * chars + 64];
                let mut narrow = vec![0u8; 8 * chars + 64];
                let best = |f: &mut dyn FnMut()| {
                    (0..30)
                        .map(|_| {
                            let start = std::time::Instant::now();
                            f();
                            start.elapsed()
                        })
                        .min()
                        .unwrap_or_default()
                };
                let took = best(&mut || {
                    std::hint::black_box(
                        decode_wide(&body, &mut dst, Progress::default()).unwrap(),
                    );
                });
                let estimate = best(&mut || {
                    std::hint::black_box(estimated_units(&body));
                });
                let pick = best(&mut || {
                    std::hint::black_box(ascii_only(&body));
                });
                let units = decode_wide(&body, &mut dst, Progress::default())
                    .unwrap()
                    .units;
                let join = best(&mut || {
                    narrow[..2 * units].copy_from_slice(&dst[..2 * units]);
                    std::hint::black_box(widen_in_place(&mut narrow, units));
                });
                println!(
                    "{name:8} escaped={escaped:5} {} bytes {chars} chars: decode {took:?} estimate {estimate:?} ascii_only {pick:?} join {join:?}",
                    body.len()
                );
            }
        }
    }
}
