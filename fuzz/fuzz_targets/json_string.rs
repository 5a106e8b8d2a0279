//! `json_string`, the JSON string bodies the core reads and writes in bulk, against serde_json
//! as the independent reference. Two modes, chosen by the first byte:
//!
//! * unescape: the bytes are a string body after its opening quote. Decoded into an output of
//!   the documented size, the outcome must agree with serde_json's reading of the same string:
//!   accepted with the same text, or refused (serde_json refuses the lone surrogates the core
//!   passes on for Python's `surrogatepass`, so those are checked on their own). Into a
//!   shorter output, any outcome but a panic is fine. Decoded in place (`unescape_in_place`,
//!   after a few bytes of something else), the outcome must be `unescape`'s exactly: the same
//!   text, offsets and surrogate flag, or the same error; nothing before the string or from
//!   its closing quote on may change.
//!   The same body decoded to `wchar_t`s of either width (`json_wide::decode_units`, the
//!   reader's way to a non-ASCII `str`: code points, or UTF-16 code units on Windows), through
//!   as many `NoRoom` stops as an output of `short` units, grown by as many each time, makes:
//!   accepted exactly when `unescape` accepts and the raw text is UTF-8, with the code points
//!   of `unescape`'s output (UTF-16 pairs joined as CPython joins them; lone surrogates
//!   included), the same closing quote and surrogate flag. The same bytes' `json_scan::build_cost` (what the async client reads to
//!   decide where a payload is built) must be its definition counted byte by byte.
//! * escape: the bytes are code points (3 bytes each, taken modulo 0x110000: surrogates
//!   included), escaped in place as the writer does, the rest after a `NoRoom` stop one code
//!   point at a time; the text must be serde_json's (which escapes exactly as
//!   `json.dumps(..., ensure_ascii=False)`), and a surrogate must be refused. Staged 1 to 3
//!   bytes past the start (`escape_ucs4_behind`, as the writer stages a `str` in its output),
//!   the text and the refusal must be the same. A first byte of 3 modulo 4 takes each code
//!   point's UTF-8 length from its top two bits instead (1, 2, 3 with surrogates, or 4 bytes):
//!   taken modulo 0x110000 nearly all are 4 bytes, and the writer's blocks of 8 mixing ASCII,
//!   escapes and every length would seldom come up.
#![no_main]

use _core::json_scan::build_cost;
use _core::json_string::{
    code_at, escape_ucs4_behind, escape_ucs4_in_place, put_escaped, unescape, unescape_in_place,
    EscapeStop,
};
use _core::json_wide::{decode_units, Progress, WideStop};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// serde_json's reading of the string that starts at `body` (after its opening quote).
fn reference(body: &[u8]) -> Option<String> {
    let mut doc = Vec::with_capacity(body.len() + 1);
    doc.push(b'"');
    doc.extend_from_slice(body);
    let mut reader = serde_json::Deserializer::from_slice(&doc);
    String::deserialize(&mut reader).ok()
}

fn check_unescape(body: &[u8], short: usize) {
    let mut dst = vec![0u8; body.len() + 8];
    let ours = unescape(body, &mut dst);
    match (&ours, reference(body)) {
        (Ok(done), Some(text)) => {
            assert!(!done.lone_surrogate, "serde_json read a lone surrogate");
            assert_eq!(
                &dst[..done.written],
                text.as_bytes(),
                "decoded text differs"
            );
            assert_eq!(body[done.closing_quote], b'"');
        }
        (Ok(done), None) => {
            // Refused by serde_json: a lone surrogate, or raw bytes that are not UTF-8 (which
            // the core's reader checks on the raw text after decoding).
            let raw_utf8 = std::str::from_utf8(&body[..done.closing_quote]).is_ok();
            assert!(
                done.lone_surrogate || !raw_utf8,
                "accepted what serde_json refuses"
            );
        }
        (Err(error), Some(_)) => panic!("refused what serde_json accepts: {error:?}"),
        (Err(_), None) => {}
    }
    let mut shorter = vec![0u8; short.min(body.len() + 8)];
    let _ = unescape(body, &mut shorter);
    check_wide(body, &dst, &ours, short);
    check_in_place(body, &dst, ours);
}

/// The code points of the (WTF-8: lone surrogates in their 3-byte form) text `bytes`.
fn code_points(bytes: &[u8]) -> Vec<u32> {
    let mut codes = Vec::new();
    let mut k = 0;
    while let Some(&lead) = bytes.get(k) {
        let len = match lead {
            0..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            _ => 4,
        };
        let mut code = u32::from(lead) & (0xFF >> (len + usize::from(len > 1)));
        for &next in bytes.get(k + 1..k + len).unwrap_or_default() {
            code = code << 6 | u32::from(next & 0x3F);
        }
        codes.push(code);
        k += len;
    }
    codes
}

/// `decode_wide`, in both widths of `wchar_t`, against `unescape`'s outcome `ours` (with its
/// output `decoded`).
fn check_wide(
    body: &[u8],
    decoded: &[u8],
    ours: &Result<_core::json_string::Unescaped, _core::json_string::UnescapeError>,
    room: usize,
) {
    check_units::<2>(body, decoded, ours, room);
    check_units::<4>(body, decoded, ours, room);
}

/// The code points of UTF-16 code units as CPython joins a 2-byte `wchar_t`'s: a high
/// surrogate followed by a low one is one character, any other surrogate stands alone.
fn joined(units: &[u16]) -> Vec<u32> {
    let mut codes = Vec::new();
    let mut k = 0;
    while k < units.len() {
        let unit = u32::from(units[k]);
        match units.get(k + 1).map(|&low| u32::from(low)) {
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

fn check_units<const UNIT: usize>(
    body: &[u8],
    decoded: &[u8],
    ours: &Result<_core::json_string::Unescaped, _core::json_string::UnescapeError>,
    room: usize,
) {
    let step = room.max(1);
    let mut dst = vec![0u8; UNIT * room];
    let mut from = Progress::default();
    let wide = loop {
        match decode_units::<UNIT>(body, &mut dst, from) {
            Err(WideStop::NoRoom(progress)) => {
                assert!(progress.read >= from.read && progress.written >= from.written);
                assert!(progress.read < body.len(), "no room past the input");
                dst.resize(dst.len() + UNIT * step, 0);
                from = progress;
            }
            other => break other,
        }
    };
    let accepted = ours
        .as_ref()
        .ok()
        .filter(|done| std::str::from_utf8(&body[..done.closing_quote]).is_ok());
    match (wide, accepted) {
        (Ok(wide), Some(done)) => {
            // The characters as CPython reads the `wchar_t`s.
            let units = &dst[..UNIT * wide.units];
            let codes: Vec<u32> = if UNIT == 4 {
                units
                    .chunks_exact(4)
                    .map(|unit| u32::from_ne_bytes([unit[0], unit[1], unit[2], unit[3]]))
                    .collect()
            } else {
                let units: Vec<u16> = units
                    .chunks_exact(2)
                    .map(|unit| u16::from_ne_bytes([unit[0], unit[1]]))
                    .collect();
                joined(&units)
            };
            assert_eq!(
                codes,
                code_points(&decoded[..done.written]),
                "wide: other text"
            );
            assert_eq!(wide.closing_quote, done.closing_quote, "wide: other end");
            assert_eq!(
                wide.lone_surrogate, done.lone_surrogate,
                "wide: other surrogate flag"
            );
            let max = codes.iter().copied().max().unwrap_or(0);
            assert_eq!(wide.bits < 0x100, max < 0x100, "wide: Latin-1 misjudged");
            let astral = codes.iter().filter(|&&c| c >= 0x1_0000).count();
            let units = codes.len() + if UNIT == 2 { astral } else { 0 };
            assert_eq!(wide.units, units, "wide: other length");
        }
        (Err(WideStop::Refused), None) => {}
        (wide, accepted) => panic!(
            "wide {wide:?} where the reader accepts: {}",
            accepted.is_some()
        ),
    }
}

/// `unescape_in_place` against `unescape`'s outcome `ours` (with its output `decoded`).
fn check_in_place(
    body: &[u8],
    decoded: &[u8],
    ours: Result<_core::json_string::Unescaped, _core::json_string::UnescapeError>,
) {
    const BEFORE: &[u8] = b"{\"k\":\"";
    let mut buf = BEFORE.to_vec();
    buf.extend_from_slice(body);
    let in_place = unescape_in_place(&mut buf, BEFORE.len());
    assert_eq!(&buf[..BEFORE.len()], BEFORE, "wrote before the start");
    match (&in_place, &ours) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "in place: other offsets");
            let text = &buf[BEFORE.len()..BEFORE.len() + a.written];
            assert_eq!(text, &decoded[..b.written], "in place: other text");
            // The reader goes on from the closing quote: nothing from there on was written.
            let rest = &buf[BEFORE.len() + a.closing_quote..];
            assert_eq!(
                rest,
                &body[a.closing_quote..],
                "in place: wrote past the string"
            );
        }
        (a, b) => assert_eq!(a, b, "in place: other outcome"),
    }
}

/// A code point from 24 bits: modulo 0x110000, or (`by_width`) in the range of the UTF-8
/// length its top two bits pick.
fn code_point(bits: u32, by_width: bool) -> u32 {
    if !by_width {
        return bits % 0x11_0000;
    }
    let rest = bits & 0x3F_FFFF;
    match bits >> 22 {
        0 => rest % 0x80,
        1 => 0x80 + rest % 0x780,
        2 => 0x800 + rest % 0xF800,
        _ => 0x1_0000 + rest % 0x10_0000,
    }
}

fn check_escape(data: &[u8], by_width: bool) {
    let codes: Vec<u32> = data
        .chunks_exact(3)
        .map(|c| u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]))
        .map(|bits| code_point(bits, by_width))
        .collect();
    let from = data.len() % 4;
    let mut ucs4: Vec<u8> = codes.iter().flat_map(|c| c.to_ne_bytes()).collect();
    let mut staged = vec![0x5C; from];
    staged.extend_from_slice(&ucs4);
    let ours = escaped_text(escape_ucs4_in_place(&mut ucs4), &ucs4, codes.len());
    let behind = escaped_text(escape_ucs4_behind(&mut staged, from), &staged, codes.len());
    assert_eq!(ours, behind, "staged {from} bytes behind: another outcome");
    check_escaped(ours, &codes);
}

/// The text an in-place escape wrote (`buf`'s start), completed one code point at a time from
/// the code points after a `NoRoom` stop (`buf`'s last `4 * count` bytes).
fn escaped_text(
    result: Result<usize, EscapeStop>,
    buf: &[u8],
    count: usize,
) -> Result<Vec<u8>, EscapeStop> {
    let codes = &buf[buf.len() - 4 * count..];
    match result {
        Ok(len) => Ok(buf[..len].to_vec()),
        Err(EscapeStop::NoRoom { written, next }) => {
            let mut out = buf[..written].to_vec();
            let mut result = Ok(());
            for k in next..count {
                let mut bytes = [0u8; 6];
                match put_escaped(code_at(codes, k).expect("in range"), &mut bytes) {
                    Ok(len) => out.extend_from_slice(&bytes[..len]),
                    Err(stop) => {
                        result = Err(stop);
                        break;
                    }
                }
            }
            result.map(|()| out)
        }
        Err(stop) => Err(stop),
    }
}

/// The escaped text (or the refusal) against serde_json's for the code points `codes`.
fn check_escaped(ours: Result<Vec<u8>, EscapeStop>, codes: &[u32]) {
    let text: Option<String> = codes.iter().map(|&c| char::from_u32(c)).collect();
    match (ours, text) {
        (Ok(bytes), Some(text)) => {
            let expected = serde_json::to_string(&text).expect("a String serialises");
            assert_eq!(bytes, &expected.as_bytes()[1..expected.len() - 1]);
        }
        (Err(EscapeStop::LoneSurrogate), None) => {}
        (ours, text) => panic!(
            "escape {ours:?} for a text that is UTF-8: {}",
            text.is_some()
        ),
    }
}

/// `json_scan::build_cost` (AVX2 where this machine has it) against its definition: one per
/// bracket, separator or backslash, eight per 8-byte word of digits, plus one; past `limit`
/// only "more".
fn check_build_cost(json: &[u8], limit: usize) {
    let structural = json.iter().filter(|&&b| b"[{,:\\".contains(&b)).count();
    let words = json
        .chunks_exact(8)
        .filter(|word| word.iter().all(u8::is_ascii_digit))
        .count();
    let whole = 1 + structural + 8 * words;
    assert_eq!(build_cost(json, usize::MAX), whole, "build cost");
    let cost = build_cost(json, limit);
    assert_eq!(cost > limit, whole > limit, "build cost past its limit");
    assert!(cost <= whole, "build cost beyond the whole count");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        check_build_cost(rest, usize::from(mode) * 16);
        check_unescape(rest, usize::from(mode));
    } else {
        check_escape(rest, mode % 4 == 3);
    }
});
