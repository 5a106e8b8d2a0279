//! An openai SDK's chat-completion request body, taken as it comes (UTF-8 JSON bytes the SDK
//! serialized), checked and compacted straight into locked memory, ready to seal.
//!
//! The SDK hands its transport immutable `bytes`: decoding them into a Python dict (or any
//! Python string) would put a second plaintext copy on the Python heap, where nothing wipes it.
//! This module reads those bytes once, never writes to them, and appends to a `LockedBuf`:
//!
//! - every member, value for value, with the whitespace outside strings removed. Strings and
//!   numbers are copied as written (after checking them against RFC 8259), so the result is
//!   byte-for-byte what `json.dumps(json.loads(body), separators=(",", ":"),
//!   ensure_ascii=False)` gives for a body the SDK wrote (the SDK uses exactly that form);
//! - refusing, at the top level, `stream` unless it is `false` or `null` (the protocol has no
//!   streaming) and `stream_options` unless it is `null`; nothing is stripped;
//! - refusing what the dict path refuses too: a body that is not a non-empty JSON object, a lone
//!   surrogate escape, a number beyond the double range (Python reads it as infinity), an
//!   integer of more digits than CPython reads (`MAX_INT_DIGITS`), nesting
//!   deeper than `MAX_JSON_DEPTH`, and a result longer than the caller's cap.
//!
//! The output never outgrows the input, so its one allocation is sized by the body the caller
//! holds, capped at the plaintext limit. Errors name the rule and the byte offset, never content.

#![forbid(unsafe_code)]

use crate::envelope::MAX_JSON_DEPTH;
use crate::error::{CoreError, CoreResult};
use crate::json_scan::{plain_prefix, scan_number, NumberScan, MAX_INT_DIGITS};
use crate::secret::LockedBuf;

/// The user-facing reason `stream` is refused (the message the SDK caller sees).
pub const STREAM_REFUSED: &str = "stream=true is not supported: the secure completion protocol \
     has no streaming (each answer is one encrypted response); leave stream out or set it to \
     false";
/// The user-facing reason `stream_options` is refused.
pub const STREAM_OPTIONS_REFUSED: &str = "stream_options is not supported: the secure \
     completion protocol has no streaming; leave stream_options out";

/// Check `body` and append its compact form to `out` (cleared first); refuse once the result
/// would exceed `max_len` bytes.
pub fn compact_request(body: &[u8], out: &mut LockedBuf, max_len: usize) -> CoreResult<()> {
    out.clear();
    // Compacting only removes bytes: the body's length (capped) is all the room it can need.
    let room = body.len().min(max_len);
    if out.capacity() < room {
        out.reserve_exact(room)?;
    }
    let mut compactor = Compactor {
        s: body,
        pos: 0,
        out,
        max_len,
    };
    compactor.request()
}

struct Compactor<'a, 'b> {
    s: &'a [u8],
    pos: usize,
    out: &'b mut LockedBuf,
    max_len: usize,
}

/// Whether a top-level member is one the protocol refuses unless its value is harmless.
#[derive(Clone, Copy, PartialEq)]
enum TopLevel {
    Stream,
    StreamOptions,
    Other,
}

impl Compactor<'_, '_> {
    fn fail_at(&self, problem: &str, pos: usize) -> CoreError {
        CoreError::InvalidArgument(format!(
            "invalid JSON request body: {problem} at byte {pos}"
        ))
    }

    fn fail(&self, problem: &str) -> CoreError {
        self.fail_at(problem, self.pos)
    }

    /// Copy `[start, end)` of the input to the output, within the cap.
    fn copy(&mut self, start: usize, end: usize) -> CoreResult<()> {
        self.put(&self.s[start..end])
    }

    fn put(&mut self, bytes: &[u8]) -> CoreResult<()> {
        if self.out.len() + bytes.len() > self.max_len {
            return Err(CoreError::RequestTooLarge(format!(
                "the serialized payload exceeds the limit of {} bytes",
                self.max_len
            )));
        }
        self.out.extend_from_slice(bytes)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The whole body: one non-empty object, its top-level members checked.
    fn request(&mut self) -> CoreResult<()> {
        self.skip_ws();
        if self.s.get(self.pos) != Some(&b'{') {
            return Err(self.fail("the request body must be a JSON object"));
        }
        self.pos += 1;
        self.put(b"{")?;
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b'}') {
            return Err(self.fail("the request body is an empty object"));
        }
        loop {
            let (start, end) = self.key()?;
            let kind = match decoded_ascii_key(&self.s[start..end]) {
                Some(k) if k.as_slice() == b"stream" => TopLevel::Stream,
                Some(k) if k.as_slice() == b"stream_options" => TopLevel::StreamOptions,
                _ => TopLevel::Other,
            };
            let out_at = self.out.len();
            self.value(1)?;
            self.check_top_level(kind, out_at)?;
            if !self.after_member(b'}')? {
                break;
            }
            self.put(b",")?;
        }
        self.skip_ws();
        if self.pos != self.s.len() {
            return Err(self.fail("unexpected data after the JSON object"));
        }
        Ok(())
    }

    /// `stream` may only be false or null, `stream_options` only null (the value is already
    /// compacted to `out[out_at..]`, which holds no whitespace).
    fn check_top_level(&self, kind: TopLevel, out_at: usize) -> CoreResult<()> {
        let value = &self.out.as_slice()[out_at..];
        match kind {
            TopLevel::Stream if value != b"false" && value != b"null" => {
                Err(CoreError::InvalidArgument(STREAM_REFUSED.into()))
            }
            TopLevel::StreamOptions if value != b"null" => {
                Err(CoreError::InvalidArgument(STREAM_OPTIONS_REFUSED.into()))
            }
            _ => Ok(()),
        }
    }

    /// After a member or element: true on ',', false on `close` (both consumed).
    fn after_member(&mut self, close: u8) -> CoreResult<bool> {
        self.skip_ws();
        match self.s.get(self.pos) {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(&c) if c == close => {
                self.pos += 1;
                self.put(&[close])?;
                Ok(false)
            }
            None => Err(self.fail("unexpected end of data")),
            Some(_) if close == b'}' => Err(self.fail("expected ',' or '}'")),
            Some(_) => Err(self.fail("expected ',' or ']'")),
        }
    }

    /// A member's key and its ':'; returns where the key's raw text (inside the quotes) is.
    fn key(&mut self) -> CoreResult<(usize, usize)> {
        self.skip_ws();
        match self.s.get(self.pos) {
            Some(b'"') => {}
            None => return Err(self.fail("unexpected end of data in an object")),
            Some(_) => return Err(self.fail("expected a string key")),
        }
        let start = self.pos;
        self.string()?;
        let raw = (start + 1, self.pos - 1);
        self.skip_ws();
        if self.s.get(self.pos) != Some(&b':') {
            return Err(self.fail("expected ':'"));
        }
        self.pos += 1;
        self.put(b":")?;
        self.skip_ws();
        Ok(raw)
    }

    fn value(&mut self, depth: usize) -> CoreResult<()> {
        match self.s.get(self.pos) {
            None => Err(self.fail("unexpected end of data")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'N' | b'I') => Err(self.fail("NaN and Infinity are not valid JSON")),
            Some(_) => Err(self.fail("unexpected character")),
        }
    }

    fn enter(&self, depth: usize) -> CoreResult<()> {
        if depth > MAX_JSON_DEPTH {
            Err(self.fail(&format!("nesting deeper than {MAX_JSON_DEPTH} levels")))
        } else {
            Ok(())
        }
    }

    fn object(&mut self, depth: usize) -> CoreResult<()> {
        self.enter(depth)?;
        self.pos += 1;
        self.put(b"{")?;
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return self.put(b"}");
        }
        loop {
            self.key()?;
            self.value(depth)?;
            if !self.after_member(b'}')? {
                return Ok(());
            }
            self.put(b",")?;
        }
    }

    fn array(&mut self, depth: usize) -> CoreResult<()> {
        self.enter(depth)?;
        self.pos += 1;
        self.put(b"[")?;
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return self.put(b"]");
        }
        loop {
            self.skip_ws();
            self.value(depth)?;
            if !self.after_member(b']')? {
                return Ok(());
            }
            self.put(b",")?;
        }
    }

    fn literal(&mut self, word: &[u8]) -> CoreResult<()> {
        if !self.s[self.pos..].starts_with(word) {
            return Err(self.fail("invalid literal"));
        }
        self.pos += word.len();
        self.put(word)
    }

    /// A string, copied as written once its escapes and UTF-8 are checked.
    fn string(&mut self) -> CoreResult<()> {
        let start = self.pos;
        self.pos += 1;
        loop {
            self.skip_plain();
            match self.s.get(self.pos) {
                None => return Err(self.fail_at("unterminated string", start)),
                Some(b'"') => break,
                Some(b'\\') => self.escape()?,
                Some(0..=0x1f) => return Err(self.fail("control character in a string")),
                Some(_) => self.pos += 1,
            }
        }
        self.pos += 1;
        // Escapes are ASCII, so the raw text is valid UTF-8 exactly when the string is (and
        // Rust's check refuses encoded surrogates, as Python's decoder does).
        if let Err(e) = std::str::from_utf8(&self.s[start..self.pos]) {
            return Err(self.fail_at("invalid UTF-8 in a string", start + e.valid_up_to()));
        }
        self.copy(start, self.pos)
    }

    /// Advance over string bytes that need no attention (SIMD compares, `plain_prefix`).
    fn skip_plain(&mut self) {
        self.pos += plain_prefix(self.s.get(self.pos..).unwrap_or_default());
    }

    /// Check one escape; a `\u` surrogate must be a high one followed by a low one.
    fn escape(&mut self) -> CoreResult<()> {
        let at = self.pos;
        self.pos += 1;
        match self.s.get(self.pos) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                self.pos += 1;
                let first = self.hex4(at)?;
                if (0xDC00..0xE000).contains(&first) {
                    return Err(self.fail_at("lone surrogate escape in a string", at));
                }
                if !(0xD800..0xDC00).contains(&first) {
                    return Ok(());
                }
                if !self.s[self.pos..].starts_with(b"\\u") {
                    return Err(self.fail_at("lone surrogate escape in a string", at));
                }
                self.pos += 2;
                let second = self.hex4(at)?;
                if (0xDC00..0xE000).contains(&second) {
                    Ok(())
                } else {
                    Err(self.fail_at("lone surrogate escape in a string", at))
                }
            }
            None => Err(self.fail_at("unterminated escape", at)),
            Some(_) => Err(self.fail_at("invalid escape", at)),
        }
    }

    fn hex4(&mut self, escape_at: usize) -> CoreResult<u32> {
        let digits = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.fail_at("truncated \\u escape", escape_at))?;
        let mut value = 0u32;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.fail_at("invalid \\u escape", escape_at)),
            };
            value = value * 16 + u32::from(v);
        }
        self.pos += 4;
        Ok(value)
    }

    /// A number, copied as written once it matches the grammar; a fraction or exponent must
    /// stay within the double range (Python would read it as infinity, which JSON cannot carry).
    fn number(&mut self) -> CoreResult<()> {
        let start = self.pos;
        let Some(NumberScan {
            end,
            int_digits,
            is_float,
        }) = scan_number(self.s, start)
        else {
            return Err(self.fail_at("invalid number", start));
        };
        self.pos = end;
        if !is_float && int_digits > MAX_INT_DIGITS {
            // Python's json.loads (the dict path's reader, and the endpoint's, at their
            // default limit) refuses it.
            return Err(self.fail_at(
                &format!("integer of more than {MAX_INT_DIGITS} digits"),
                start,
            ));
        }
        if is_float {
            let finite = std::str::from_utf8(&self.s[start..self.pos])
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .is_some_and(f64::is_finite);
            if !finite {
                return Err(self.fail_at("number out of the double range", start));
            }
        }
        self.copy(start, self.pos)
    }
}

/// The names we compare keys with are short and ASCII: longer keys are never one of them.
const LONGEST_CHECKED_KEY: usize = 16;

/// A short key's decoded bytes when it is ASCII (escapes resolved: `"str\u0065am"` is
/// `stream` to every JSON reader), or None when it cannot be one of the names we check.
fn decoded_ascii_key(raw: &[u8]) -> Option<KeyText> {
    let mut key = KeyText {
        bytes: [0; LONGEST_CHECKED_KEY],
        len: 0,
    };
    let mut i = 0;
    while i < raw.len() {
        let b = if raw[i] == b'\\' {
            let (b, used) = match raw.get(i + 1)? {
                b'u' => {
                    let hex = std::str::from_utf8(raw.get(i + 2..i + 6)?).ok()?;
                    (u8::try_from(u32::from_str_radix(hex, 16).ok()?).ok()?, 6)
                }
                b'/' => (b'/', 2),
                _ => return None,
            };
            i += used;
            b
        } else {
            i += 1;
            raw[i - 1]
        };
        if !b.is_ascii() || key.len == LONGEST_CHECKED_KEY {
            return None;
        }
        key.bytes[key.len] = b;
        key.len += 1;
    }
    Some(key)
}

/// A decoded key of at most `LONGEST_CHECKED_KEY` bytes (structure, not content).
struct KeyText {
    bytes: [u8; LONGEST_CHECKED_KEY],
    len: usize,
}

impl KeyText {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 1024 * 1024;

    fn compact(body: &[u8]) -> CoreResult<Vec<u8>> {
        compact_request_capped(body, CAP)
    }

    fn compact_request_capped(body: &[u8], cap: usize) -> CoreResult<Vec<u8>> {
        let mut out = LockedBuf::with_capacity(0)?;
        compact_request(body, &mut out, cap)?;
        Ok(out.as_slice().to_vec())
    }

    fn refused(body: &[u8]) -> String {
        match compact(body) {
            Err(CoreError::InvalidArgument(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn whitespace_outside_strings_is_removed_and_the_rest_kept_as_written() {
        let body = br#" { "model" : "m", "messages" : [ {"role": "user", "content": "a  b\n\u00e9 \"q\""} ],
            "temperature": 0.5, "n": -0, "x": 1E+2, "t": true, "f": false, "z": null, "e": {}, "a": [] } "#;
        let out = compact(body).unwrap();
        assert_eq!(
            out,
            br#"{"model":"m","messages":[{"role":"user","content":"a  b\n\u00e9 \"q\""}],"temperature":0.5,"n":-0,"x":1E+2,"t":true,"f":false,"z":null,"e":{},"a":[]}"#
        );
    }

    #[test]
    fn the_input_is_never_written_and_non_ascii_text_passes_as_utf8() {
        let body = "{\"messages\":[{\"content\":\"Grüße 🌍 日本\"}]}"
            .as_bytes()
            .to_vec();
        let before = body.clone();
        assert_eq!(compact(&body).unwrap(), before);
        assert_eq!(body, before);
    }

    #[test]
    fn stream_is_refused_unless_false_or_null() {
        for value in ["true", "1", "0", "\"\"", "[]", "{}", "\"false\""] {
            let body = format!(r#"{{"model":"m","stream": {value}}}"#);
            assert_eq!(refused(body.as_bytes()), STREAM_REFUSED, "{value}");
        }
        for value in ["false", "null", " false "] {
            let body = format!(r#"{{"model":"m","stream":{value}}}"#);
            let out = compact(body.as_bytes()).unwrap();
            assert_eq!(
                out,
                format!(r#"{{"model":"m","stream":{}}}"#, value.trim()).as_bytes()
            );
        }
    }

    #[test]
    fn an_escaped_stream_key_is_still_stream_and_nested_streams_are_content() {
        assert_eq!(refused(br#"{"str\u0065am":true}"#), STREAM_REFUSED);
        assert_eq!(refused(br#"{"stre\u0061m":1,"model":"m"}"#), STREAM_REFUSED);
        // Only the top level is the request's own `stream`.
        assert!(compact(br#"{"tools":[{"stream":true}],"x":{"stream_options":{}}}"#).is_ok());
        // A duplicate stream key cannot hide behind a harmless first one.
        assert_eq!(
            refused(br#"{"stream":false,"stream":true}"#),
            STREAM_REFUSED
        );
    }

    #[test]
    fn stream_options_is_refused_unless_null() {
        assert_eq!(
            refused(br#"{"model":"m","stream_options":{"include_usage":true}}"#),
            STREAM_OPTIONS_REFUSED
        );
        assert!(compact(br#"{"model":"m","stream_options":null}"#).is_ok());
    }

    #[test]
    fn what_the_dict_path_refuses_is_refused_with_the_offset_not_the_content() {
        let cases: [(&[u8], &str); 13] = [
            (b"[1]", "must be a JSON object"),
            (b" {} ", "empty object"),
            (b"", "must be a JSON object"),
            (br#"{"a":"secret\ud800x"}"#, "lone surrogate"),
            (br#"{"a":"secret\udc00"}"#, "lone surrogate"),
            (br#"{"a":"secret\ud800\u0041"}"#, "lone surrogate"),
            (br#"{"a":1e999}"#, "double range"),
            (br#"{"a":NaN}"#, "NaN"),
            (br#"{"a":01}"#, "expected ',' or '}'"),
            (b"{\"a\":\"secret\x01\"}", "control character"),
            (b"{\"a\":\"secret\xff\"}", "invalid UTF-8"),
            (b"{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8"),
            (br#"{"a":1} x"#, "unexpected data"),
        ];
        for (body, problem) in cases {
            let message = refused(body);
            assert!(message.contains(problem), "{message}");
            assert!(message.contains("at byte"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn integers_longer_than_python_reads_are_refused() {
        let body = |digits: usize, tail: &str| format!("{{\"n\":-{}{tail}}}", "7".repeat(digits));
        assert!(compact(body(MAX_INT_DIGITS, "").as_bytes()).is_ok());
        let message = refused(body(MAX_INT_DIGITS + 1, "").as_bytes());
        assert!(message.contains("4300 digits at byte 5"), "{message}");
        // A float (in the double range): no digit limit.
        let fraction = format!("{{\"n\":-0.{}}}", "7".repeat(MAX_INT_DIGITS + 1));
        assert!(compact(fraction.as_bytes()).is_ok());
    }

    #[test]
    fn truncated_bodies_are_refused_at_every_cut() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi \"x\" \u00e9"}],"n":1.5e3,"t":true}"#;
        assert!(compact(body).is_ok());
        for cut in 0..body.len() {
            assert!(compact(&body[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |levels: usize| {
            let mut body = String::from("{\"a\":");
            body.push_str(&"[".repeat(levels));
            body.push_str(&"]".repeat(levels));
            body.push('}');
            body
        };
        assert!(compact(deep(MAX_JSON_DEPTH - 1).as_bytes()).is_ok());
        let message = refused(deep(MAX_JSON_DEPTH).as_bytes());
        assert!(message.contains("nesting deeper"), "{message}");
        // Far past the limit: refused, not a stack overflow.
        assert!(compact(deep(1_000_000).as_bytes()).is_err());
    }

    #[test]
    fn the_cap_counts_the_compact_form() {
        let body = br#"{ "model" :   "m" }"#;
        let compact_len = br#"{"model":"m"}"#.len();
        assert!(compact_request_capped(body, compact_len).is_ok());
        assert!(matches!(
            compact_request_capped(body, compact_len - 1),
            Err(CoreError::RequestTooLarge(_))
        ));
    }

    #[test]
    fn a_reused_buffer_is_cleared_first() {
        let mut out = LockedBuf::with_capacity(0).unwrap();
        compact_request(br#"{"a":"first"}"#, &mut out, CAP).unwrap();
        compact_request(br#"{"b":2}"#, &mut out, CAP).unwrap();
        assert_eq!(out.as_slice(), br#"{"b":2}"#);
    }

    /// serde_json as an independent oracle: a body is accepted exactly when it is one JSON
    /// object serde_json reads (our extra rules aside), and what we keep reads back to the same
    /// value.
    #[test]
    fn serde_json_agrees_on_what_is_json_and_what_it_means() {
        let bodies: &[&[u8]] = &[
            br#"{"a":1}"#,
            br#" {"a" : [1, 2.5, -0.0, 1e10, -1E-3, true, false, null, "x\"y\\z\/"]} "#,
            br#"{"a":"\ud83d\ude00 \u00e9 \t\n"}"#,
            "{\"a\":\"é 🌍\"}".as_bytes(),
            br#"{"a":{"b":{"c":[{},[],""]}}}"#,
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":.5}"#,
            br#"{"a":+1}"#,
            br#"{"a":1e}"#,
            br#"{"a":-}"#,
            br#"{"a":tru}"#,
            br#"{"a":nul}"#,
            br#"{"a" 1}"#,
            br#"{"a":1,}"#,
            br#"{,"a":1}"#,
            br#"{"a":[1,]}"#,
            br#"{"a":[,1]}"#,
            br#"{"a":"\x"}"#,
            br#"{"a":"\u12"}"#,
            br#"{"a":"\uZZZZ"}"#,
            br#"{"a":"\ud800"}"#,
            br#"{"a":"\udc00\ud800"}"#,
            br#"{a:1}"#,
            br#"{'a':1}"#,
            b"{\"a\":1}\x00",
            b"\xef\xbb\xbf{\"a\":1}",
            b"{\"a\":\"\t\"}",
            b"{\"a\":1}\n\r\t ",
            br#"{"a":123456789012345678901234567890}"#,
            br#"{"a":1e308,"b":-1e-400}"#,
            br#"{"a":1e309}"#,
        ];
        for body in bodies {
            let ours = compact(body);
            let theirs = serde_json::from_slice::<serde_json::Value>(body);
            match (&ours, &theirs) {
                (Ok(out), Ok(value)) => {
                    let back: serde_json::Value = serde_json::from_slice(out).unwrap();
                    assert_eq!(&back, value, "{}", String::from_utf8_lossy(body));
                    assert!(out.len() <= body.len(), "compacting never grows a body");
                }
                (Err(_), Err(_)) => {}
                _ => panic!(
                    "disagreement on {:?}: ours {:?}, serde_json {:?}",
                    String::from_utf8_lossy(body),
                    ours.as_ref().map(|_| ()),
                    theirs.as_ref().map(|_| ())
                ),
            }
        }
    }

    #[test]
    fn keys_are_decoded_only_as_far_as_the_names_we_check() {
        assert_eq!(decoded_ascii_key(b"stream").unwrap().as_slice(), b"stream");
        assert_eq!(
            decoded_ascii_key(br"\u0073tream").unwrap().as_slice(),
            b"stream"
        );
        assert!(decoded_ascii_key(b"a_key_longer_than_sixteen").is_none());
        assert!(decoded_ascii_key(br"\u00e9").is_none());
        assert!(decoded_ascii_key(br"\n").is_none());
    }
}

#[cfg(feature = "python")]
pub mod py {
    //! `_core.RequestBody`: an SDK's request body held compacted in locked memory until sealed.
    use std::panic::AssertUnwindSafe;
    use std::sync::Mutex;

    use pyo3::exceptions::{PyTypeError, PyValueError};
    use pyo3::prelude::*;
    use pyo3::types::PyBytes;

    use crate::envelope;
    use crate::error::py::no_panic;
    use crate::py::filled_bytes::bytes_filled_by;
    use crate::py::keys::ServerPublicKey;
    use crate::secret::LockedBuf;

    /// The request body an openai SDK serialized, checked and compacted into locked memory
    /// (`compact_request`); `seal` encrypts it once, in place, for the server key.
    #[pyclass(module = "nomyo_native._core", name = "RequestBody", frozen)]
    pub struct RequestBody {
        plaintext: Mutex<Option<LockedBuf>>,
        size: usize,
    }

    #[pymethods]
    impl RequestBody {
        /// Read `body` (immutable `bytes`, never written to) into locked memory.
        #[new]
        fn new(body: &Bound<'_, PyAny>) -> PyResult<Self> {
            let body = body.cast::<PyBytes>().map_err(|_| {
                PyTypeError::new_err("the request body must be bytes (immutable), not a copy")
            })?;
            let bytes = body.as_bytes();
            let plaintext = no_panic(AssertUnwindSafe(|| {
                let mut out = LockedBuf::with_capacity(0)?;
                super::compact_request(bytes, &mut out, envelope::MAX_PLAINTEXT_BYTES)?;
                Ok(out)
            }))?;
            let size = plaintext.len();
            Ok(RequestBody {
                plaintext: Mutex::new(Some(plaintext)),
                size,
            })
        }

        /// Bytes of the compacted plaintext.
        #[getter]
        fn size(&self) -> usize {
            self.size
        }

        /// Whether the plaintext is gone (sealed or wiped).
        #[getter]
        fn consumed(&self) -> bool {
            self.plaintext.lock().map(|p| p.is_none()).unwrap_or(true)
        }

        /// Seal the plaintext for `server_key` (the request envelope, PROTOCOL.md section 2).
        /// Once only: the plaintext is encrypted in place and then dropped (wiped).
        fn seal<'py>(
            &self,
            py: Python<'py>,
            server_key: &Bound<'py, ServerPublicKey>,
        ) -> PyResult<Bound<'py, PyBytes>> {
            let taken = self.plaintext.lock().ok().and_then(|mut p| p.take());
            let mut plaintext = taken.ok_or_else(|| {
                PyValueError::new_err("this request body was already sealed or wiped")
            })?;
            let key = &server_key.get().0;
            let len = envelope::sealed_len(plaintext.len(), key);
            bytes_filled_by(py, len, |out| {
                py.detach(|| {
                    no_panic(AssertUnwindSafe(|| {
                        envelope::seal_into(&mut plaintext, key, out)
                    }))
                })
            })
        }

        /// Drop (wipe) the plaintext without sealing it.
        fn wipe(&self) {
            if let Ok(mut p) = self.plaintext.lock() {
                p.take();
            }
        }

        fn __repr__(&self) -> String {
            let state = if self.consumed() { ", consumed" } else { "" };
            format!("RequestBody(size={}{state})", self.size)
        }
    }
}
