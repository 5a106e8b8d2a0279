//! The bodies of JSON strings in bulk, both ways, on plain slices (no Python, no allocation):
//! `unescape` decodes an escaped body into UTF-8 for the reader (`json`); `escape_ucs4_in_place` writes
//! a caller's code points (a `str` read as UCS-4) as the escaped UTF-8
//! `json.dumps(..., ensure_ascii=False)` makes, for the writer.
//!
//! Both copy runs that need no attention 8 bytes (or 8 code points) at a time and spend
//! per-character work only on escapes and non-ASCII characters. Python's `json.dumps` escapes
//! every non-ASCII character, so a response of 1 MiB of non-ASCII text arrives as about 2 MB
//! of `\uXXXX`; decoding those is the reader's hot loop.

#![forbid(unsafe_code)]

use crate::json_scan::{plain_prefix, word_escape_mask};

// ---- reading: escaped bytes -> UTF-8 ------------------------------------------------------------

/// What `unescape` decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct Unescaped {
    /// Bytes of UTF-8 written at the start of the output.
    pub written: usize,
    /// Offset of the closing quote in the input.
    pub closing_quote: usize,
    /// Whether a `\uXXXX` escape wrote a lone surrogate (in the 3-byte form Python's
    /// `surrogatepass` codec reads): the output is then not UTF-8.
    pub lone_surrogate: bool,
}

/// Why a string body does not decode; offsets are into the input.
#[derive(Debug, PartialEq, Eq)]
pub enum UnescapeError {
    /// The input ended before the closing quote.
    Unterminated,
    /// A raw control character (below U+0020) at this offset.
    Control(usize),
    /// A backslash at this offset is followed by no escape letter.
    InvalidEscape(usize),
    /// The input ends right after the backslash at this offset.
    UnterminatedEscape(usize),
    /// The `\u` escape at this offset has fewer than four bytes after it in the input.
    TruncatedHex(usize),
    /// The `\u` escape at this offset is not followed by four hex digits.
    InvalidHex(usize),
    /// The output was too short: the caller broke `unescape`'s size rule.
    NoRoom,
}

impl UnescapeError {
    /// The same error with its offset counted from `start` (of a buffer) instead.
    fn relative_to(self, start: usize) -> Self {
        use UnescapeError::*;
        match self {
            Control(at) => Control(at - start),
            InvalidEscape(at) => InvalidEscape(at - start),
            UnterminatedEscape(at) => UnterminatedEscape(at - start),
            TruncatedHex(at) => TruncatedHex(at - start),
            InvalidHex(at) => InvalidHex(at - start),
            other => other,
        }
    }
}

/// The value of each hex digit byte, 0x80 for every other byte.
static HEX_VALUE: [u8; 256] = {
    let mut table = [0x80u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// The four hex digits after the `\u` at `at`.
pub(crate) fn hex4(src: &[u8], at: usize) -> Result<u32, UnescapeError> {
    let digits = src
        .get(at + 2..at + 6)
        .ok_or(UnescapeError::TruncatedHex(at))?;
    let mut value = 0u32;
    let mut invalid = 0u8;
    for &digit in digits {
        let nibble = HEX_VALUE[usize::from(digit)];
        invalid |= nibble;
        value = (value << 4) | u32::from(nibble & 0x0F);
    }
    if invalid & 0x80 != 0 {
        return Err(UnescapeError::InvalidHex(at));
    }
    Ok(value)
}

/// UTF-8 of `code` (surrogates too, in their 3-byte form), packed little-endian into a word
/// (first byte lowest, unused bytes zero), and its length. Branch-free: in mixed text the
/// lengths change from character to character, where branches would mispredict.
#[inline(always)]
fn utf8_packed(code: u32) -> (u32, usize) {
    let len =
        1 + usize::from(code >= 0x80) + usize::from(code >= 0x800) + usize::from(code >= 0x10000);
    // All four bytes of the 4-byte form, lead byte's payload first; the last `len` are kept.
    let all = (code >> 18)
        | ((0x80 | ((code >> 12) & 0x3F)) << 8)
        | ((0x80 | ((code >> 6) & 0x3F)) << 16)
        | ((0x80 | (code & 0x3F)) << 24);
    let kept = all >> (8 * (4 - len));
    // The first kept byte becomes the lead: its payload under the prefix of its length.
    const LEAD: [u32; 5] = [0, 0, 0xC0, 0xE0, 0xF0];
    let multi = (kept & !0xC0) | LEAD[len];
    (if len == 1 { code } else { multi }, len)
}

/// UTF-8 of a code point below 0x10000 (surrogates too, in their 3-byte form), packed as
/// `utf8_packed`'s, and its length: a branch between the 3-byte form and the others (which a
/// mask selects between). Text written in one script keeps taking one side of the branch;
/// `utf8_packed`'s branch-free form measured slower on it.
#[inline(always)]
fn utf8_bmp(code: u32) -> (u32, usize) {
    if code < 0x800 {
        let two = 0x80C0 | (code >> 6) | ((code & 0x3F) << 8);
        let one_mask = u32::from(code < 0x80).wrapping_neg();
        (
            (code & one_mask) | (two & !one_mask),
            2 - usize::from(code < 0x80),
        )
    } else {
        let three = 0x0080_80E0 | (code >> 12) | (((code >> 6) & 0x3F) << 8);
        (three | ((code & 0x3F) << 16), 3)
    }
}

/// Decode the escape at `src[at]` (a backslash): its UTF-8 into `out`, and the input length it
/// took, the UTF-8 length, and whether it was a lone surrogate. A high surrogate followed by a
/// `\u` low surrogate is one character; followed by anything else it stands alone, and what
/// follows is read as the next escape (as Python's json does).
#[inline(always)]
fn escape(src: &[u8], at: usize, out: &mut [u8; 4]) -> Result<(usize, usize, bool), UnescapeError> {
    // `\u` first, by a plain test: it is nearly every escape in the text of a server that
    // escapes non-ASCII characters, and a jump table on the letter would mispredict.
    if src.get(at + 1) == Some(&b'u') {
        let first = hex4(src, at)?;
        let mut taken = 6;
        let mut code = first;
        if (0xD800..0xDC00).contains(&first) && src.get(at + 6..at + 8) == Some(b"\\u") {
            let second = hex4(src, at + 6)?;
            if (0xDC00..0xE000).contains(&second) {
                code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                taken = 12;
            }
        }
        let (packed, len) = utf8_packed(code);
        *out = packed.to_le_bytes();
        return Ok((taken, len, (0xD800..0xE000).contains(&code)));
    }
    simple_escape(src, at, out)
}

/// Any escape but `\u`: out of line, so that the compiler does not fold the `\u` test back
/// into a jump table on the letter.
#[cold]
#[inline(never)]
fn simple_escape(
    src: &[u8],
    at: usize,
    out: &mut [u8; 4],
) -> Result<(usize, usize, bool), UnescapeError> {
    let simple = match src.get(at + 1) {
        Some(b'"') => b'"',
        Some(b'\\') => b'\\',
        Some(b'/') => b'/',
        Some(b'b') => 0x08,
        Some(b'f') => 0x0c,
        Some(b'n') => b'\n',
        Some(b'r') => b'\r',
        Some(b't') => b'\t',
        None => return Err(UnescapeError::UnterminatedEscape(at)),
        Some(_) => return Err(UnescapeError::InvalidEscape(at)),
    };
    out[0] = simple;
    Ok((2, 1, false))
}

/// Decode the body of a JSON string, `src` starting just after its opening quote, into `dst`,
/// up to the closing quote. Raw bytes are copied as they are (the caller checks that they are
/// UTF-8: escapes split them only at ASCII bytes, so the output is UTF-8 whenever the raw text
/// is and no lone surrogate was written). `dst` must be at least 8 bytes longer than the body
/// (the decoded text is never longer than its escaped form, and runs are copied a word at a
/// time); a shorter one gives `NoRoom`, never a panic.
pub fn unescape(src: &[u8], dst: &mut [u8]) -> Result<Unescaped, UnescapeError> {
    let (mut i, mut o) = (0usize, 0usize);
    let mut lone_surrogate = false;
    loop {
        // Runs that need no attention: copy a word, keep the bytes before its first special one
        // (not tried right after an escape that another follows, as in escaped non-ASCII text).
        while let (false, Some(word), Some(out)) = (
            src.get(i) == Some(&b'\\'),
            src.get(i..i + 8),
            dst.get_mut(o..o + 8),
        ) {
            // Fixed-size arrays, so that the copy is one load and one store, not a memmove call.
            let word: [u8; 8] = word.try_into().unwrap_or([b'\\'; 8]);
            if let Ok(out) = <&mut [u8; 8]>::try_from(out) {
                *out = word;
            }
            let mask = word_escape_mask(u64::from_le_bytes(word));
            if mask != 0 {
                let plain = (mask.trailing_zeros() / 8) as usize;
                i += plain;
                o += plain;
                break;
            }
            i += 8;
            o += 8;
        }
        let Some(&byte) = src.get(i) else {
            return Err(UnescapeError::Unterminated);
        };
        match byte {
            b'"' => {
                return Ok(Unescaped {
                    written: o,
                    closing_quote: i,
                    lone_surrogate,
                })
            }
            b'\\' => {
                let mut code = [0u8; 4];
                let (taken, len, lone) = escape(src, i, &mut code)?;
                // All four bytes at once where they fit (the rule leaves room), only `len` count.
                match dst.get_mut(o..o + 4) {
                    Some(out) => {
                        if let Ok(out) = <&mut [u8; 4]>::try_from(out) {
                            *out = code;
                        }
                    }
                    None => {
                        for (k, &byte) in code[..len].iter().enumerate() {
                            *dst.get_mut(o + k).ok_or(UnescapeError::NoRoom)? = byte;
                        }
                    }
                }
                lone_surrogate |= lone;
                i += taken;
                o += len;
            }
            0..=0x1F => return Err(UnescapeError::Control(i)),
            _ => {
                *dst.get_mut(o).ok_or(UnescapeError::NoRoom)? = byte;
                i += 1;
                o += 1;
            }
        }
    }
}

/// `unescape` in place: the body starts at `buf[start]` (just after its opening quote) and
/// its decoded text is written over it from `buf[start]` on, so that no second buffer of the
/// string's size is needed. Offsets in the result and in errors are from `start`, as
/// `unescape`'s are from the start of its input, and are the same as `unescape`'s for the same
/// body. Where decoding fails, the bytes from `start` to the failure are left partly decoded.
///
/// Sound because the decoded text never outgrows its escaped form: the write position trails
/// the read position by the bytes the escapes so far saved (`gap`), and every store ends at or
/// before the first byte not read yet. A run of plain bytes stays where it is while nothing
/// was saved, is moved a word at a time once the gap holds a word, and by `copy_within`
/// (which allows the overlap) otherwise or when it is long.
pub fn unescape_in_place(buf: &mut [u8], start: usize) -> Result<Unescaped, UnescapeError> {
    let (mut i, mut o) = (start, start);
    let mut lone_surrogate = false;
    let offset = |at: usize| at - start;
    loop {
        let gap = i - o;
        if gap >= 8 {
            move_runs_by_words(buf, &mut i, &mut o, &mut lone_surrogate);
        } else {
            let run = plain_prefix(buf.get(i..).unwrap_or_default());
            if gap > 0 {
                buf.copy_within(i..i + run, o);
            }
            i += run;
            o += run;
        }
        let Some(&byte) = buf.get(i) else {
            return Err(UnescapeError::Unterminated);
        };
        match byte {
            b'"' => {
                return Ok(Unescaped {
                    written: offset(o),
                    closing_quote: offset(i),
                    lone_surrogate,
                })
            }
            b'\\' => {
                let mut code = [0u8; 4];
                let (taken, len, lone) =
                    escape(buf, i, &mut code).map_err(|error| error.relative_to(start))?;
                // Read before written, and each store ends by `i + taken` (o <= i): nothing
                // unread is touched. A `\u` escape (6 or 12 bytes) stores all four bytes at
                // once, only `len` of them count; any other (2 bytes) is one byte.
                match buf.get_mut(o..o + 4).map(<&mut [u8; 4]>::try_from) {
                    Some(Ok(out)) if taken >= 4 => *out = code,
                    _ => buf[o..o + len].copy_from_slice(&code[..len]),
                }
                lone_surrogate |= lone;
                i += taken;
                o += len;
            }
            0..=0x1F => return Err(UnescapeError::Control(offset(i))),
            _ => {
                // A plain byte the runs above stopped short of (the end of the buffer is near).
                buf[o] = byte;
                i += 1;
                o += 1;
            }
        }
    }
}

/// The hot loop of `unescape_in_place` once `o` trails `i` by at least a word: plain runs
/// moved back a word at a time (each store ends before `i`; a run longer than a word at memory
/// speed), each followed by a well-formed `\u` escape (or pair) decoded on a fixed window,
/// until anything else (left to the caller) or the end of the buffer is near.
#[inline(always)]
fn move_runs_by_words(buf: &mut [u8], i: &mut usize, o: &mut usize, lone_surrogate: &mut bool) {
    while let Some(word) = buf.get(*i..*i + 8) {
        let word: [u8; 8] = word.try_into().unwrap_or([b'\\'; 8]);
        if word[0] != b'\\' {
            buf[*o..*o + 8].copy_from_slice(&word);
            let mask = word_escape_mask(u64::from_le_bytes(word));
            if mask == 0 {
                let run = 8 + plain_prefix(buf.get(*i + 8..).unwrap_or_default());
                buf.copy_within(*i..*i + run, *o);
                *i += run;
                *o += run;
                continue;
            }
            let plain = (mask.trailing_zeros() / 8) as usize;
            *i += plain;
            *o += plain;
        }
        let Some((code, taken)) = buf
            .get(*i..*i + 12)
            .and_then(|window| unicode_escape(window.try_into().ok()?))
        else {
            return;
        };
        // A pair is 4 bytes of UTF-8, one escape 1 to 3.
        let (packed, len) = if taken == 12 {
            utf8_packed(code)
        } else {
            utf8_bmp(code)
        };
        // `o + 4 <= i`: before the escape just read.
        buf[*o..*o + 4].copy_from_slice(&packed.to_le_bytes());
        // The whole code point: a pair's (0x1D800, 0x10D800...) may end like a surrogate.
        *lone_surrogate |= code & 0xFFFF_F800 == 0xD800;
        *i += taken;
        *o += len;
    }
}

/// The well-formed `\u` escape at the start of `esc`, with the low surrogate escape after it
/// when it is a high surrogate followed by one: its code point and input length. `None` for
/// anything else, a high surrogate followed by a `\u` with bad digits included (`escape`
/// reports those).
#[inline(always)]
pub(crate) fn unicode_escape(esc: &[u8; 12]) -> Option<(u32, usize)> {
    if esc[0] != b'\\' || esc[1] != b'u' {
        return None;
    }
    let first = hex_value([esc[2], esc[3], esc[4], esc[5]])?;
    if first & 0xFC00 != 0xD800 || esc[6] != b'\\' || esc[7] != b'u' {
        return Some((first, 6));
    }
    let second = hex_value([esc[8], esc[9], esc[10], esc[11]])?;
    if second & 0xFC00 == 0xDC00 {
        Some((0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00), 12))
    } else {
        Some((first, 6))
    }
}

/// The value of four hex digits, `None` when one is not a hex digit.
#[inline(always)]
fn hex_value(digits: [u8; 4]) -> Option<u32> {
    let mut value = 0u32;
    let mut invalid = 0u8;
    for digit in digits {
        let nibble = HEX_VALUE[usize::from(digit)];
        invalid |= nibble;
        value = (value << 4) | u32::from(nibble & 0x0F);
    }
    (invalid & 0x80 == 0).then_some(value)
}

// ---- writing: code points -> escaped UTF-8 ------------------------------------------------------

/// Extra bytes the escape of each ASCII character takes beyond the character itself (`\"`,
/// `\\`, `\n`... one more; other control characters `\u00XX`, five more).
static ESCAPE_EXTRA: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut c = 0;
    while c < 0x20 {
        table[c] = 5;
        c += 1;
    }
    table[0x08] = 1;
    table[0x09] = 1;
    table[0x0A] = 1;
    table[0x0C] = 1;
    table[0x0D] = 1;
    table[b'"' as usize] = 1;
    table[b'\\' as usize] = 1;
    table
};

/// The code points in `ucs4` (native-endian `u32`s, as `PyUnicode_AsUCS4` writes them).
fn code_points(ucs4: &[u8]) -> impl Iterator<Item = u32> + '_ {
    ucs4.chunks_exact(4)
        .map(|unit| u32::from_ne_bytes([unit[0], unit[1], unit[2], unit[3]]))
}

/// How a block of 8 code points is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    /// Printable ASCII but '"' and '\\': one byte each.
    PlainAscii,
    /// No escape and no surrogate, some non-ASCII: UTF-8 from a copy of the code points, with
    /// none of `put_escaped`'s checks.
    Unescaped,
    /// An escape or a surrogate: code point by code point (`put_escaped` stops at either).
    Careful,
}

/// Which way the 8 code points of `block` are written (one branch-free fold, which
/// vectorises).
#[inline(always)]
fn block_kind(block: &[u32; 8]) -> BlockKind {
    let (mut ascii, mut careful) = (true, false);
    for &code in block {
        let escaped = code < 0x20 || code == u32::from(b'"') || code == u32::from(b'\\');
        ascii &= code < 0x80;
        careful |= escaped | (code & 0xFFFF_F800 == 0xD800);
    }
    match (careful, ascii) {
        (true, _) => BlockKind::Careful,
        (false, true) => BlockKind::PlainAscii,
        (false, false) => BlockKind::Unescaped,
    }
}

/// One code point as `json.dumps(..., ensure_ascii=False)` writes it: the bytes (at the
/// start of the array) and their number.
#[inline(always)]
fn escape_code_point(code: u32) -> ([u8; 8], usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; 8];
    if code >= 0x80 {
        let (packed, len) = utf8_packed(code);
        bytes[..4].copy_from_slice(&packed.to_le_bytes());
        return (bytes, len);
    }
    let c = code as u8;
    let len = match ESCAPE_EXTRA[usize::from(c)] {
        0 => {
            bytes[0] = c;
            1
        }
        5 => {
            let hex = [HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]];
            bytes[..6].copy_from_slice(&[b'\\', b'u', b'0', b'0', hex[0], hex[1]]);
            6
        }
        _ => {
            let letter = match c {
                0x08 => b'b',
                0x09 => b't',
                0x0A => b'n',
                0x0C => b'f',
                0x0D => b'r',
                other => other,
            };
            bytes[..2].copy_from_slice(&[b'\\', letter]);
            2
        }
    };
    (bytes, len)
}

/// UTF-8 of `code` (not a surrogate), packed as `utf8_packed`'s, by a branch on its length:
/// in text the lengths come in runs (words of one script), which the branch predictor follows.
#[inline(always)]
fn utf8_by_length(code: u32) -> (u32, usize) {
    if code < 0x80 {
        (code, 1)
    } else if code < 0x800 {
        (0x80C0 | (code >> 6) | ((code & 0x3F) << 8), 2)
    } else if code < 0x10000 {
        let packed = 0x0080_80E0 | (code >> 12) | (((code >> 6) & 0x3F) << 8);
        (packed | ((code & 0x3F) << 16), 3)
    } else {
        let packed = 0x8080_80F0 | (code >> 18) | (((code >> 12) & 0x3F) << 8);
        (
            packed | (((code >> 6) & 0x3F) << 16) | ((code & 0x3F) << 24),
            4,
        )
    }
}

/// Write the printable ASCII code points of the blocks from `r` on (the first one is) a
/// byte each at `o` (<= r), up to the first block that is not; where reading and writing are
/// then. Its own small loop, kept out of line: long ASCII runs in a non-ASCII `str` (English
/// with a few typographic quotes) are common, and the loop's speed should not hang on how the
/// code around it is laid out.
#[inline(never)]
fn plain_ascii_run(buf: &mut [u8], mut r: usize, mut o: usize, end: usize) -> (usize, usize) {
    while let Some(block) = buf.get(r..r + 32).filter(|_| r + 32 <= end) {
        let block: [u8; 32] = block.try_into().unwrap_or([0; 32]);
        if !plain_ascii(&block) {
            break;
        }
        let mut bytes = [0u8; 8];
        for (byte, code) in bytes.iter_mut().zip(code_points(&block)) {
            *byte = code as u8;
        }
        buf[o..o + 8].copy_from_slice(&bytes);
        o += 8;
        r += 32;
    }
    (r, o)
}

/// Whether none of 8 code points is outside printable ASCII or is '"' or '\\'.
#[inline(always)]
fn plain_ascii(block: &[u8; 32]) -> bool {
    let mut all = true;
    for code in code_points(block) {
        all &= (0x20..0x80).contains(&code) && code != u32::from(b'"') && code != 0x5C;
    }
    all
}

/// Whether `code` is written escaped: a control character, '"' or '\\'.
#[inline(always)]
fn needs_escape(code: u32) -> bool {
    code < 0x20 || code == u32::from(b'"') || code == u32::from(b'\\')
}

/// Why `escape_ucs4_in_place` stopped short of the end.
#[derive(Debug, PartialEq, Eq)]
pub enum EscapeStop {
    /// A code point of the UTF-16 surrogate range: a `str` holding one cannot be UTF-8.
    LoneSurrogate,
    /// The escape of the code point at index `next` (a `\u00XX`, 6 bytes) would overwrite
    /// code points not read yet: the escaped text so far (`written` bytes at the start) and
    /// the code points from `next` on are intact, for the caller to go on with elsewhere.
    NoRoom {
        /// Bytes of escaped text at the start of the buffer.
        written: usize,
        /// Index of the first code point not written.
        next: usize,
    },
}

/// The code point at index `k` of the UCS-4 buffer.
#[inline(always)]
pub fn code_at(buf: &[u8], k: usize) -> Option<u32> {
    let unit: [u8; 4] = buf.get(4 * k..4 * k + 4)?.try_into().ok()?;
    Some(u32::from_ne_bytes(unit))
}

/// Whether any code point of the UCS-4 buffer from index `from` on is a UTF-16 surrogate.
pub fn has_surrogate(buf: &[u8], from: usize) -> bool {
    code_points(buf.get(4 * from..).unwrap_or_default()).any(|code| code & 0xFFFF_F800 == 0xD800)
}

/// Rewrite the native-endian UCS-4 in `buf` (as `PyUnicode_AsUCS4` writes it) in place as the
/// escaped UTF-8 `json.dumps(..., ensure_ascii=False)` writes, from its start; returns the
/// bytes of escaped text. In place because a code point's UTF-8 is never longer than its 4
/// UCS-4 bytes: the output, written behind the input, never overtakes what is still to read.
/// Only a `\u00XX` escape (6 bytes) can, and where it would, writing stops (`NoRoom`).
pub fn escape_ucs4_in_place(buf: &mut [u8]) -> Result<usize, EscapeStop> {
    escape_ucs4_behind(buf, 0)
}

/// `escape_ucs4_in_place` of the code points in `buf[from..]`, the escaped text written from
/// `buf[0]` on (`from` bytes behind them, which only adds room): the writer stages a `str`'s
/// code points in its output buffer, just past the opening quote where that is 4-byte aligned.
/// `NoRoom`'s `next` counts code points from `from`.
pub fn escape_ucs4_behind(buf: &mut [u8], from: usize) -> Result<usize, EscapeStop> {
    escape_ucs4_with(buf, from, crate::ucs4_simd::available())
}

/// `escape_ucs4_behind`, with the vector step for runs that need no escape (`ucs4_simd`) or
/// without it (the portable steps alone; tests compare the two).
fn escape_ucs4_with(buf: &mut [u8], from: usize, vector: bool) -> Result<usize, EscapeStop> {
    let end = from + buf.len().saturating_sub(from) / 4 * 4;
    // `r` is where the next code point's 4 bytes start. Invariant at the top of each step:
    // o <= r (the output is behind the input).
    let (mut o, mut r) = (0usize, from);
    // Blocks the steps below take before the vector step is tried again: none while it makes
    // headway, more after each try that made none (text full of escapes, such as source code,
    // where each try costs a block's work twice).
    let (mut wait, mut backoff) = (0u32, 0u32);
    while r < end {
        if vector && wait == 0 {
            // Up to the first block that needs care (or the last few code points), which the
            // steps below take.
            let before = r;
            (r, o) = crate::ucs4_simd::clean_run(buf, r, o, end);
            if r >= end {
                break;
            }
            backoff = if r == before {
                (2 * backoff + 1).min(15)
            } else {
                0
            };
            wait = backoff + 1;
        }
        wait = wait.saturating_sub(1);
        // Eight code points at a time: printable ASCII ones are one byte each; a block with
        // neither an escape nor a surrogate (most of a non-ASCII text) is encoded straight from
        // a copy of its code points; any other block is written code point by code point.
        let (block_end, block) = match buf.get(r..r + 32) {
            Some(block) if r + 32 <= end => {
                let mut codes = [0u32; 8];
                for (code, unit) in codes.iter_mut().zip(block.chunks_exact(4)) {
                    *code = u32::from_ne_bytes([unit[0], unit[1], unit[2], unit[3]]);
                }
                (r + 32, Some(codes))
            }
            _ => (end, None),
        };
        if let Some(codes) = block {
            match block_kind(&codes) {
                BlockKind::PlainAscii => {
                    let mut bytes = [0u8; 8];
                    for (byte, &code) in bytes.iter_mut().zip(&codes) {
                        *byte = code as u8;
                    }
                    buf[o..o + 8].copy_from_slice(&bytes);
                    o += 8;
                    r += 32;
                    // A run of ASCII blocks goes on in its own loop (a call, not made for a
                    // lone ASCII block between others).
                    let next = buf.get(r..).and_then(|rest| code_at(rest, 0));
                    if next.is_some_and(|code| (0x20..0x80).contains(&code)) {
                        (r, o) = plain_ascii_run(buf, r, o, end);
                    }
                    continue;
                }
                BlockKind::Unescaped => {
                    // The block is read (in `codes`): each 4-byte store ends by the end of its
                    // own code point's 4 bytes, so within the block (o <= r throughout).
                    for code in codes {
                        let (packed, len) = utf8_by_length(code);
                        buf[o..o + 4].copy_from_slice(&packed.to_le_bytes());
                        o += len;
                    }
                    r += 32;
                    continue;
                }
                BlockKind::Careful => {}
            }
        }
        while r < block_end {
            let Some(code) = code_at(&buf[r..], 0) else {
                break;
            };
            // Room up to the end of this code point's own 4 bytes, which are read already.
            o += put_escaped(code, &mut buf[o..r + 4]).map_err(|stop| match stop {
                EscapeStop::NoRoom { .. } => EscapeStop::NoRoom {
                    written: o,
                    next: (r - from) / 4,
                },
                other => other,
            })?;
            r += 4;
        }
    }
    Ok(o)
}

const NO_ROOM: EscapeStop = EscapeStop::NoRoom {
    written: 0,
    next: 0,
};

/// Write one code point's escaped UTF-8 at the start of `dst` (6 bytes always fit); its length.
#[inline(always)]
pub fn put_escaped(code: u32, dst: &mut [u8]) -> Result<usize, EscapeStop> {
    // Branches by length: in text the lengths come in runs (words of one script), which the
    // branch predictor follows well.
    if code < 0x80 && !needs_escape(code) {
        *dst.first_mut().ok_or(NO_ROOM)? = code as u8;
        return Ok(1);
    }
    if code >= 0x80 {
        let (packed, len) = if code < 0x800 {
            (0x80C0 | (code >> 6) | ((code & 0x3F) << 8), 2)
        } else if code < 0x10000 {
            if code & 0xF800 == 0xD800 {
                return Err(EscapeStop::LoneSurrogate);
            }
            let packed = 0x0080_80E0 | (code >> 12) | (((code >> 6) & 0x3F) << 8);
            (packed | ((code & 0x3F) << 16), 3)
        } else {
            let packed = 0x8080_80F0 | (code >> 18) | (((code >> 12) & 0x3F) << 8);
            (
                packed | (((code >> 6) & 0x3F) << 16) | ((code & 0x3F) << 24),
                4,
            )
        };
        // All four bytes stored at once where they fit; only `len` count.
        if let Some(Ok(out)) = dst.get_mut(..4).map(<&mut [u8; 4]>::try_from) {
            *out = u32::to_le_bytes(packed);
        } else {
            let out = dst.get_mut(..len).ok_or(NO_ROOM)?;
            out.copy_from_slice(&packed.to_le_bytes()[..len]);
        }
        return Ok(len);
    }
    let (bytes, len) = escape_code_point(code);
    let out = dst.get_mut(..len).ok_or(NO_ROOM)?;
    out.copy_from_slice(&bytes[..len]);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &[u8]) -> Result<(Vec<u8>, usize, bool), UnescapeError> {
        let mut dst = vec![0u8; body.len() + 8];
        let done = unescape(body, &mut dst)?;
        Ok((
            dst[..done.written].to_vec(),
            done.closing_quote,
            done.lone_surrogate,
        ))
    }

    #[test]
    fn decodes_every_escape_kind() {
        let body = br#"a\"b\\c\/d\be\ff\ng\rh\ti\u00e9\u20ac\ud83d\ude00\u0000z" tail"#;
        let (text, quote, lone) = decode(body).unwrap();
        assert_eq!(
            text,
            "a\"b\\c/d\x08e\x0cf\ng\rh\ti\u{e9}\u{20ac}\u{1f600}\0z".as_bytes()
        );
        assert_eq!(&body[quote..quote + 2], b"\" ");
        assert!(!lone);
    }

    #[test]
    fn every_code_point_below_0x10000_packs_as_the_reference_packs_it() {
        for code in 0..0x10000u32 {
            assert_eq!(utf8_bmp(code), utf8_packed(code), "{code:#x}");
            assert_eq!(utf8_by_length(code), utf8_packed(code), "{code:#x}");
        }
        for code in [0x10000u32, 0x1F510, 0x10FFFF] {
            assert_eq!(utf8_by_length(code), utf8_packed(code), "{code:#x}");
        }
        // And the reference is UTF-8 itself (surrogates in their 3-byte form).
        for c in [
            '\u{0}',
            '\u{7f}',
            '\u{80}',
            '\u{7ff}',
            '\u{800}',
            '\u{ffff}',
            '\u{10000}',
        ] {
            let (packed, len) = utf8_packed(u32::from(c));
            assert_eq!(&packed.to_le_bytes()[..len], c.to_string().as_bytes());
        }
    }

    #[test]
    fn lone_and_reversed_surrogates_stand_alone() {
        for (body, expected) in [
            (&br#"\ud800x""#[..], &b"\xed\xa0\x80x"[..]),
            (br#"\ude00\ud83d""#, b"\xed\xb8\x80\xed\xa0\xbd"),
            (br#"\ud800\u0041""#, b"\xed\xa0\x80A"),
            (br#"\ud800\n""#, b"\xed\xa0\x80\n"),
        ] {
            let (text, _, lone) = decode(body).unwrap();
            assert_eq!(text, expected, "{body:?}");
            assert!(lone);
        }
    }

    #[test]
    fn errors_name_the_offending_offset() {
        for (body, error) in [
            (&b"abc"[..], UnescapeError::Unterminated),
            (b"abcdefghijk", UnescapeError::Unterminated),
            (b"ab\x01\"", UnescapeError::Control(2)),
            (b"abcdefghij\x1f\"", UnescapeError::Control(10)),
            (b"a\\x\"", UnescapeError::InvalidEscape(1)),
            (b"a\\", UnescapeError::UnterminatedEscape(1)),
            (b"\\u12", UnescapeError::TruncatedHex(0)),
            (b"\\u12zz\"", UnescapeError::InvalidHex(0)),
            (b"\\u12\"]", UnescapeError::InvalidHex(0)),
            (b"x\\ud800\\u12", UnescapeError::TruncatedHex(7)),
            (b"x\\ud800\\uzzzz\"", UnescapeError::InvalidHex(7)),
        ] {
            assert_eq!(decode(body), Err(error), "{body:?}");
        }
    }

    #[test]
    fn words_across_every_boundary_match_a_byte_by_byte_decoding() {
        // An escape or special byte at every offset of the word-at-a-time copy.
        for pad in 0..20 {
            for piece in ["\\n", "\\u00e9", "\\ud83d\\ude00", "é", "\\\\", "\\\""] {
                let body = format!("{}{piece}{}\"", "x".repeat(pad), "y".repeat(pad % 9));
                let expected: String = serde_json::from_str(&format!("\"{body}")).unwrap();
                let (text, quote, _) = decode(body.as_bytes()).unwrap();
                assert_eq!(text, expected.as_bytes(), "{body}");
                assert_eq!(quote, body.len() - 1);
            }
        }
    }

    #[test]
    fn a_short_output_is_an_error_not_a_panic() {
        let body = b"0123456789abcdef\\u00e9\"";
        for room in 0..body.len() {
            let mut dst = vec![0u8; room];
            let _ = unescape(body, &mut dst);
        }
        let mut dst = vec![0u8; 1];
        assert_eq!(unescape(b"\\u00e9\"", &mut dst), Err(UnescapeError::NoRoom));
    }

    /// `unescape_in_place` on `body` placed after a few bytes of something else, checked to
    /// agree with `unescape` (same text, offsets, surrogate flag, or the same error), and to
    /// leave what precedes `start` alone.
    fn decode_in_place(body: &[u8]) -> Result<(Vec<u8>, usize, bool), UnescapeError> {
        let mut buf = b"[{\"".to_vec();
        buf.extend_from_slice(body);
        let result = unescape_in_place(&mut buf, 3).map(|done| {
            (
                buf[3..3 + done.written].to_vec(),
                done.closing_quote,
                done.lone_surrogate,
            )
        });
        assert_eq!(&buf[..3], b"[{\"");
        assert_eq!(result, decode(body), "{:?}", String::from_utf8_lossy(body));
        result
    }

    #[test]
    fn in_place_agrees_on_every_escape_kind_and_error() {
        let bodies: [&[u8]; 16] = [
            br#"a\"b\\c\/d\be\ff\ng\rh\ti\u00e9\u20ac\ud83d\ude00\u0000z" tail"#,
            br#"\ud800x""#,
            br#"\ude00\ud83d""#,
            br#"\ud800\u0041""#,
            br#"\ud800\n""#,
            b"abc",
            b"ab\x01\"",
            b"abcdefghij\x1f\"",
            b"a\\x\"",
            b"a\\",
            b"\\u12",
            b"\\u12zz\"",
            b"\\u12\"]",
            b"x\\ud800\\u12",
            b"x\\ud800\\uzzzz\"",
            b"\\u00e9\\u00e9\\u00e9abcdefgh\x02ijkl\"",
        ];
        for body in bodies {
            let _ = decode_in_place(body);
        }
    }

    #[test]
    fn a_pair_whose_code_point_ends_like_a_surrogate_is_no_lone_surrogate() {
        // U+1D800.. (SignWriting), U+2D800.. (CJK): their low 16 bits look like a surrogate's.
        // Decoded in the hot loop (after escapes saved a word) as by the general step: the
        // text is UTF-8, not flagged for `surrogatepass`.
        for pair in ["\\ud836\\udc00", "\\ud877\\udfff", "\\udbf6\\udc00"] {
            for lead in ["", "\\u00e9\\u00e9", "\\n\\n\\n\\n\\n\\n\\n\\n"] {
                let body = format!("{lead}{pair}{pair}abc\"");
                let (_, _, lone) = decode_in_place(body.as_bytes()).unwrap();
                assert!(!lone, "{body}");
            }
        }
    }

    #[test]
    fn in_place_moves_runs_right_at_every_gap_and_length() {
        // The escapes before a run set how far the writing trails the reading (1, 4 or 8
        // bytes saved each); runs of every length up to past the long-run move follow, each
        // ended by an escape or by a special byte that stops decoding.
        for (lead, saved) in [("\\n", 1), ("\\u00e9", 4), ("\\ud83d\\ude00", 8)] {
            for leads in 0..12 {
                for run in 0..42 {
                    for tail in ["\\t", "\\u20ac", "\"", "\x01\"", "\\q\"", "é\""] {
                        let body = format!(
                            "{}{}{}{}tail\"",
                            lead.repeat(leads),
                            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"[..run].to_owned(),
                            tail,
                            "z".repeat(run % 11)
                        );
                        if let Ok((text, _, _)) = decode_in_place(body.as_bytes()) {
                            let doc = format!("\"{body}");
                            let mut reader = serde_json::Deserializer::from_str(&doc);
                            let expected: String =
                                serde::Deserialize::deserialize(&mut reader).unwrap();
                            assert_eq!(text, expected.as_bytes(), "{body} ({saved})");
                        }
                    }
                }
            }
        }
    }

    fn ucs4(text: &str) -> Vec<u8> {
        text.chars()
            .flat_map(|c| u32::from(c).to_ne_bytes())
            .collect()
    }

    /// In place where it can be, then the rest one code point at a time, as `json` does.
    fn escaped(text: &str) -> Vec<u8> {
        escaped_behind(text, 0).unwrap()
    }

    /// `escape_ucs4_behind` with the code points `from` bytes past the start, then the rest
    /// one code point at a time after a `NoRoom` stop, as the writer does; with the vector
    /// step and without it, which must agree (stops included).
    fn escaped_behind(text: &str, from: usize) -> Result<Vec<u8>, EscapeStop> {
        let portable = escaped_behind_with(text, from, false);
        if crate::ucs4_simd::available() {
            assert_eq!(escaped_behind_with(text, from, true), portable, "{text:?}");
        }
        portable
    }

    fn escaped_behind_with(text: &str, from: usize, vector: bool) -> Result<Vec<u8>, EscapeStop> {
        let mut buf = vec![0xAA; from];
        buf.extend_from_slice(&ucs4(text));
        match escape_ucs4_with(&mut buf, from, vector) {
            Ok(len) => Ok(buf[..len].to_vec()),
            Err(EscapeStop::NoRoom { written, next }) => {
                let mut out = buf[..written].to_vec();
                for k in next..(buf.len() - from) / 4 {
                    let mut bytes = [0u8; 6];
                    let len = put_escaped(code_at(&buf[from..], k).unwrap(), &mut bytes)?;
                    out.extend_from_slice(&bytes[..len]);
                }
                Ok(out)
            }
            Err(stop) => Err(stop),
        }
    }

    /// `escape_ucs4_in_place` of `units`, checked to give the same with and without the vector
    /// step.
    fn in_place_both(units: &mut [u8]) -> Result<usize, EscapeStop> {
        let mut copy = units.to_vec();
        let portable = escape_ucs4_with(&mut copy, 0, false);
        let ours = escape_ucs4_in_place(units);
        assert_eq!(ours, portable);
        if let Ok(len) = ours {
            assert_eq!(units[..len], copy[..len]);
        }
        ours
    }

    /// Random text of `len` code points drawn from `alphabet` by the generator `state`.
    fn random_text(state: &mut u64, alphabet: &[char], len: usize) -> String {
        (0..len)
            .map(|_| {
                *state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                alphabet[(*state >> 33) as usize % alphabet.len()]
            })
            .collect()
    }

    #[test]
    fn random_mixed_script_text_is_written_as_serde_json_writes_it_at_every_offset_and_length() {
        // Each alphabet weighs one kind of block: mostly clean text of every UTF-8 length, with
        // now and then a character JSON escapes (which ends a vector run) or a long ASCII run.
        let alphabets: [&[char]; 5] = [
            &[
                'h', 'é', 'l', 'o', ' ', 'ö', 'Ε', 'λ', 'ά', '漢', '字', '🔐', '\u{7ff}', '\u{800}',
            ],
            &[
                'a',
                'b',
                ' ',
                'é',
                'ÿ',
                '\u{80}',
                '\u{7f}',
                '\u{ffff}',
                '\u{10000}',
                '\u{10ffff}',
            ],
            &[
                '漢', '字', '🔐', '😀', '\u{e000}', '\u{d7ff}', '\u{fffd}', '\u{fe0f}', 'x',
            ],
            &[
                'a', 'é', '漢', '🔐', '\n', '"', '\\', '\u{1}', '\u{1f}', ' ', '\u{20}', '!',
            ],
            &[
                'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'é',
            ],
        ];
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        for alphabet in alphabets {
            for len in (0..80).chain([255, 256, 257, 1000]) {
                for round in 0..6 {
                    let text = random_text(&mut state, alphabet, len);
                    let expected = serde_json::to_string(&text).unwrap();
                    let want = &expected.as_bytes()[1..expected.len() - 1];
                    for from in 0..4 {
                        let ours = escaped_behind(&text, from).unwrap();
                        assert_eq!(ours, want, "{text:?} from {from} round {round}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_surrogate_in_random_text_is_refused_with_and_without_the_vector_step() {
        let alphabet = ['a', 'é', 'Ε', '漢', '🔐', ' '];
        let mut state = 7u64;
        for len in 1..70 {
            for at in [0, len / 3, len / 2, len - 1] {
                let text = random_text(&mut state, &alphabet, len);
                let mut units = ucs4(&text);
                units[4 * at..4 * at + 4].copy_from_slice(&0xDC00u32.to_ne_bytes());
                assert_eq!(
                    in_place_both(&mut units),
                    Err(EscapeStop::LoneSurrogate),
                    "{len} {at}"
                );
            }
        }
    }

    #[test]
    fn behind_its_input_the_escape_writes_the_same_text_and_stops_later_if_at_all() {
        for from in 0..4 {
            for text in [
                "\u{1}abc",
                "🔐🔐\u{1}",
                "\u{1}\u{2}\u{3}é",
                "aé€🔐\n\"\\x",
                "",
            ] {
                let expected = serde_json::to_string(text).unwrap();
                let ours = escaped_behind(text, from).unwrap();
                assert_eq!(ours, &expected.as_bytes()[1..expected.len() - 1], "{from}");
            }
            // A six-byte escape at the very start fits in place once it is 2 bytes behind.
            let mut buf = vec![0; from];
            buf.extend_from_slice(&ucs4("\u{1}é"));
            let stopped = matches!(
                escape_ucs4_behind(&mut buf, from),
                Err(EscapeStop::NoRoom {
                    written: 0,
                    next: 0
                })
            );
            assert_eq!(stopped, from < 2, "{from}");
            let mut lone = vec![0; from];
            lone.extend_from_slice(&ucs4("ab"));
            lone.extend_from_slice(&0xDC00u32.to_ne_bytes());
            assert_eq!(
                escape_ucs4_behind(&mut lone, from),
                Err(EscapeStop::LoneSurrogate)
            );
        }
    }

    #[test]
    fn writes_what_serde_json_writes_for_every_ascii_character_at_every_offset() {
        // serde_json escapes exactly as json.dumps(ensure_ascii=False) does, lower-case hex.
        for c in 0u8..128 {
            for pad in 0..17 {
                let text = format!("{}{}é🔐{}", "a".repeat(pad), c as char, "b".repeat(pad % 5));
                let expected = serde_json::to_string(&text).unwrap();
                assert_eq!(escaped(&text), &expected.as_bytes()[1..expected.len() - 1]);
            }
        }
    }

    #[test]
    fn every_utf8_length_is_encoded() {
        let text = "aé€🔐\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}".repeat(5);
        assert_eq!(escaped(&text), text.as_bytes());
    }

    #[test]
    fn blocks_of_every_kind_side_by_side_are_written_as_serde_json_writes_them() {
        // Eight code points a block: plain ASCII, non-ASCII of each length with and without
        // ASCII, and blocks with escapes; every sequence of three, shifted by 0 to 8 code
        // points so that they straddle the blocks too, and cut short at the end.
        let kinds = [
            "abcdefgh",
            "éééééééé",
            "aé€🔐bç漢😀",
            "漢字漢字漢字漢字",
            "😀🔐😀🔐😀🔐😀🔐",
            "ab\ncd\"e\\",
            "\u{1}é€\u{1f}🔐\u{7f}\u{80}\u{7ff}",
            "\u{800}\u{ffff}\u{10000}\u{10ffff}\u{d7ff}\u{e000}ab",
        ];
        for a in kinds {
            for b in kinds {
                for c in kinds {
                    for shift in 0..=8 {
                        let text = format!("{}{a}{b}{c}", "x".repeat(shift));
                        for cut in [0, 3] {
                            let text: String =
                                text.chars().take(text.chars().count() - cut).collect();
                            let expected = serde_json::to_string(&text).unwrap();
                            assert_eq!(
                                escaped(&text),
                                &expected.as_bytes()[1..expected.len() - 1],
                                "{text:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_surrogate_is_refused_in_a_block_of_any_kind_at_any_place() {
        for filler in ["a", "é", "漢", "🔐", "\n"] {
            for len in [8, 16, 24, 40] {
                for at in 0..len {
                    for surrogate in [0xD800u32, 0xDBFF, 0xDC00, 0xDFFF] {
                        let mut units = Vec::new();
                        for k in 0..len {
                            if k == at {
                                units.extend_from_slice(&surrogate.to_ne_bytes());
                            } else {
                                units.extend_from_slice(&ucs4(filler));
                            }
                        }
                        let result = in_place_both(&mut units);
                        // A `\n` in place may first stop for room; the writer then finds
                        // the surrogate in the code points left (`has_surrogate`).
                        match result {
                            Err(EscapeStop::NoRoom { next, .. }) => {
                                assert!(filler == "\n" && next <= at, "{filler} {at}");
                            }
                            other => assert_eq!(other, Err(EscapeStop::LoneSurrogate)),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn surrogates_are_refused() {
        for code in [0xD800u32, 0xDBFF, 0xDC00, 0xDFFF] {
            for pad in [0, 3, 10, 40] {
                let mut units = ucs4(&"a".repeat(pad));
                units.extend_from_slice(&code.to_ne_bytes());
                units.extend_from_slice(&ucs4("tail"));
                assert_eq!(in_place_both(&mut units), Err(EscapeStop::LoneSurrogate));
            }
        }
    }

    #[test]
    fn has_surrogate_looks_from_the_index_on() {
        let mut units = ucs4("a\u{d7ff}");
        units.extend_from_slice(&0xDFFFu32.to_ne_bytes());
        units.extend_from_slice(&ucs4("\u{e000}\u{10000}"));
        assert!(has_surrogate(&units, 0) && has_surrogate(&units, 2));
        assert!(!has_surrogate(&units, 3) && !has_surrogate(&units, 9));
        assert!(!has_surrogate(&ucs4("a\u{d7ff}\u{e000}"), 0));
    }

    #[test]
    fn a_six_byte_escape_stops_in_place_writing_only_where_it_would_overtake() {
        // At the start nothing is gained yet; one ASCII character (3 bytes gained) or one
        // 2-byte character makes room enough; 4-byte characters gain nothing.
        for (text, stops_at) in [
            ("\u{1}abc", Some((0, 0))),
            ("a\u{1}bc", None),
            ("é\u{1}bc", None),
            ("🔐🔐\u{1}", Some((8, 2))),
            ("🔐\u{1f}x", Some((4, 1))),
            ("\u{1}\u{2}\u{3}", Some((0, 0))),
        ] {
            let mut units = ucs4(text);
            let result = escape_ucs4_in_place(&mut units);
            match stops_at {
                Some((written, next)) => {
                    assert_eq!(
                        result,
                        Err(EscapeStop::NoRoom { written, next }),
                        "{text:?}"
                    )
                }
                None => assert!(result.is_ok(), "{text:?}"),
            }
            let expected = serde_json::to_string(text).unwrap();
            assert_eq!(escaped(text), &expected.as_bytes()[1..expected.len() - 1]);
        }
        // A long run of control characters after a long ASCII run: in place to the end.
        let text = format!("{}{}", "a".repeat(200), "\u{1}".repeat(100));
        let mut units = ucs4(&text);
        assert_eq!(escape_ucs4_in_place(&mut units), Ok(200 + 600));
    }
}

#[cfg(test)]
mod timing {
    //! `cargo test --release --no-default-features --lib json_string::timing -- --ignored --nocapture`
    use super::*;

    #[test]
    #[ignore = "timing, by hand"]
    fn time_unescape_and_escape() {
        let unit = "héllo wörld Ελλάδα 漢字 🔐 ";
        let text = unit.repeat(1 << 20 >> 5);
        let mut body: String = text
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_string()
                } else {
                    let mut units = [0u16; 2];
                    c.encode_utf16(&mut units)
                        .iter()
                        .map(|u| format!("\\u{u:04x}"))
                        .collect()
                }
            })
            .collect();
        body.push('"');
        let mut dst = vec![0u8; body.len() + 8];
        let best = |f: &mut dyn FnMut()| crate::timing::best_of(30, f);
        let took = best(&mut || {
            std::hint::black_box(unescape(body.as_bytes(), &mut dst).unwrap());
        });
        println!("unescape {} bytes: {took:?}", body.len());
        let mut in_place = body.clone().into_bytes();
        let took = best(&mut || {
            in_place.copy_from_slice(body.as_bytes());
            std::hint::black_box(unescape_in_place(&mut in_place, 0).unwrap());
        });
        println!("unescape in place (with a 3 MB copy): {took:?}");
        let units: Vec<u8> = text
            .chars()
            .flat_map(|c| u32::from(c).to_ne_bytes())
            .collect();
        let mut scratch = units.clone();
        let took = best(&mut || {
            scratch.copy_from_slice(&units);
            std::hint::black_box(escape_ucs4_in_place(&mut scratch).unwrap());
        });
        println!(
            "escape in place (with a 3 MB copy) {} chars: {took:?}",
            text.chars().count()
        );
        let mut staged = vec![0u8; units.len() + 3];
        for from in 0..4 {
            let took = best(&mut || {
                staged[from..from + units.len()].copy_from_slice(&units);
                let buf = &mut staged[..from + units.len()];
                std::hint::black_box(escape_ucs4_behind(buf, from).unwrap());
            });
            println!("escape {from} bytes behind (with a 3 MB copy): {took:?}");
        }
        let took = best(&mut || {
            scratch.copy_from_slice(&units);
            std::hint::black_box(&mut scratch);
        });
        println!("the 3 MB copy alone: {took:?}");
        let took = best(&mut || {
            let mut len = 0;
            for unit in units.chunks_exact(4) {
                let code = u32::from_ne_bytes([unit[0], unit[1], unit[2], unit[3]]);
                if code < 0x80 {
                    dst[len] = code as u8;
                    len += 1;
                    continue;
                }
                let c = char::from_u32(code).unwrap();
                len += c.encode_utf8(&mut dst[len..]).len();
            }
            std::hint::black_box(len);
        });
        println!("old utf8 loop: {took:?}");
    }
    #[test]
    #[ignore = "timing, by hand"]
    fn time_escape_by_script() {
        let texts = [
            ("ascii", "the quick brown fox jumps over "),
            ("latin-1", "déjà vu à la française, naïve "),
            ("greek", "Ελλάδα καλημέρα κόσμε "),
            ("cjk", "漢字仮名交じり文の例です"),
            ("emoji", "🔐🔑🗝️🔒"),
            ("mixed", "héllo wörld Ελλάδα 漢字 🔐 "),
            ("controls", "line\tone\nline \"two\"\\\n"),
            (
                "english",
                "The “quick” brown fox — it jumps over the lazy dog. ",
            ),
            ("blocks", "abcdefghéééééééé"),
        ];
        for (name, unit) in texts {
            let text = unit.repeat((1 << 20) / unit.len());
            let units: Vec<u8> = text
                .chars()
                .flat_map(|c| u32::from(c).to_ne_bytes())
                .collect();
            let mut scratch = units.clone();
            let mut took = |vector: bool| {
                (0..30)
                    .map(|_| {
                        let start = std::time::Instant::now();
                        scratch.copy_from_slice(&units);
                        std::hint::black_box(escape_ucs4_with(&mut scratch, 0, vector).ok());
                        start.elapsed()
                    })
                    .min()
                    .unwrap_or_default()
            };
            let (portable, vector) = (took(false), took(crate::ucs4_simd::available()));
            let copy = (0..30)
                .map(|_| {
                    let start = std::time::Instant::now();
                    scratch.copy_from_slice(&units);
                    std::hint::black_box(&mut scratch);
                    start.elapsed()
                })
                .min()
                .unwrap_or_default();
            println!(
                "escape {name:9} {} chars: portable {portable:?} vector {vector:?} (the copy before each: {copy:?})",
                units.len() / 4
            );
        }
    }
    #[test]
    #[ignore = "timing, by hand"]
    fn time_unescape_by_script() {
        // As a server that escapes every non-ASCII character (Python's json.dumps) writes them.
        let mut random = String::new();
        let mut state = 0x1234_5678u32;
        let widths = ['a', 'é', 'Ω', '漢', '🔐', '\n', 'b', 'ö'];
        for _ in 0..400_000 {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            random.push(widths[(state >> 16) as usize % widths.len()]);
        }
        let texts = [
            ("ascii", "the quick brown fox jumps over ".repeat(33_000)),
            ("latin-1", "déjà vu à la française, naïve ".repeat(34_000)),
            ("cjk", "漢字仮名交じり文の例です".repeat(29_000)),
            ("emoji", "🔐🔑🗝🔒".repeat(65_000)),
            ("mixed", "héllo wörld Ελλάδα 漢字 🔐 ".repeat(26_000)),
            (
                "lines",
                "a line of code;\n\tindented \"quoted\"\n".repeat(30_000),
            ),
            ("random", random),
        ];
        let only = std::env::var("TIMING_TEXT").ok();
        for (name, text) in texts {
            if only.as_deref().is_some_and(|only| only != name) {
                continue;
            }
            let mut body = serde_json::to_string(&text).unwrap().into_bytes();
            body.remove(0);
            // serde_json writes non-ASCII raw: escape it as json.dumps does.
            let body: Vec<u8> = String::from_utf8(body)
                .unwrap()
                .chars()
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
                .collect();
            let mut buf = body.clone();
            let took = (0..if only.is_some() { 1000 } else { 30 })
                .map(|_| {
                    buf.copy_from_slice(&body);
                    let start = std::time::Instant::now();
                    std::hint::black_box(unescape_in_place(&mut buf, 0).unwrap());
                    start.elapsed()
                })
                .min()
                .unwrap_or_default();
            println!("unescape {name:8} {} bytes: {took:?}", body.len());
        }
    }
}
