//! The common, well-formed response envelope read at memory speed: the fast path of
//! `envelope::open`.
//!
//! serde_json reads a string a byte (or word) at a time and `open`'s strict reader parses the
//! envelope, then its `encrypted_payload` again: the 1.4 MB base64 ciphertext of a 1 MiB reply
//! (3 MB when the endpoint escapes non-ASCII text) was read twice that way. Here the envelope's
//! fields are found with one SIMD search (memchr) each for the closing quote instead, over the
//! raw bytes: no UTF-8 pass over the body first. The ciphertext's end is found by the caller
//! (`scan_with`), which decodes it on the way (`envelope::plain_parts`).
//!
//! It accepts only the plain shape: one object of the protocol's fields, each once, string
//! values (and `processed_at` a number or null), the `encrypted_payload` object holding only
//! `ciphertext`, `nonce` and `tag`, JSON whitespace between tokens. Anything else, valid or not,
//! is `None`, and `open` reads the body with its strict reader instead, which then also words
//! any error: so this path changes no outcome and no message, it only reaches the same fields
//! sooner.
//!
//! A string's body is the bytes up to the next quote, and nothing inside it is checked here
//! (escapes, control characters, non-ASCII or invalid UTF-8 bytes): every name is compared with
//! one of the protocol's names and every value, in `envelope::plain_parts`, with an ASCII label
//! or decoded as strict base64, whose alphabet has none of those bytes. A body holding one
//! fails there, the envelope goes to the strict reader, and a body that passes is ASCII without
//! a backslash (so its closing quote was not escaped). With the bytes between the strings
//! (structure, whitespace, a number) ASCII by this grammar, an envelope the fast path opens is
//! ASCII throughout, and so UTF-8: `open` checks that only for the strict reader.

#![forbid(unsafe_code)]

use crate::json_scan::scan_number;

/// The envelope's fields, borrowed from the body: string bodies between their quotes (not yet
/// checked: see the module's description), `processed_at` as its raw number or `null`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    /// `version`.
    pub version: &'a [u8],
    /// `algorithm`.
    pub algorithm: &'a [u8],
    /// `key_algorithm`, when present.
    pub key_algorithm: Option<&'a [u8]>,
    /// `payload_algorithm`, when present.
    pub payload_algorithm: Option<&'a [u8]>,
    /// `processed_at`'s raw text (a number or `null`), when present.
    pub processed_at: Option<&'a [u8]>,
    /// `encrypted_payload.ciphertext`.
    pub ciphertext: &'a [u8],
    /// `encrypted_payload.nonce`.
    pub nonce: &'a [u8],
    /// `encrypted_payload.tag`.
    pub tag: &'a [u8],
    /// `encrypted_aes_key`.
    pub encrypted_aes_key: &'a [u8],
}

/// Where the scan is in the body.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The byte after any whitespace, consumed when it is `byte`.
    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.bytes.get(self.pos) == Some(&byte)).then(|| self.pos += 1)
    }

    /// A string: the bytes from its opening quote to the next quote, unchecked (the caller
    /// proves them ASCII with no backslash, by the comparison or the base64 decoding it makes).
    fn string_body(&mut self) -> Option<&'a [u8]> {
        self.string_body_by(|rest| memchr::memchr(b'"', rest))
    }

    /// `string_body`, the body's length found by `length` from the bytes after the opening
    /// quote: the offset of the next quote, or `None`.
    fn string_body_by(&mut self, length: impl FnOnce(&[u8]) -> Option<usize>) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let rest = self.bytes.get(self.pos..)?;
        let len = length(rest)?;
        // Only a quote ends a body, whoever found it.
        let body = rest.get(..len).filter(|_| rest.get(len) == Some(&b'"'))?;
        self.pos += len + 1;
        Some(body)
    }

    /// A number (RFC 8259 grammar) or `null`: its raw text.
    fn number_or_null(&mut self) -> Option<&'a [u8]> {
        self.skip_ws();
        let start = self.pos;
        let end = if self.bytes.get(start..)?.starts_with(b"null") {
            start + 4
        } else {
            scan_number(self.bytes, start)?.end
        };
        self.pos = end;
        self.bytes.get(start..end)
    }

    /// An object's members, each name's body handed to `member` (which reads the value, and
    /// refuses a name that is not one of the protocol's); `None` when the object is not of
    /// that shape or `member` refuses.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        loop {
            let name = self.string_body()?;
            self.eat(b':')?;
            member(self, name)?;
            self.skip_ws();
            match self.bytes.get(self.pos)? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// Set `slot` once: a second occurrence of a name is for the strict reader to refuse.
fn once<'a>(slot: &mut Option<&'a [u8]>, value: &'a [u8]) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

/// The fields of a plain envelope (see the module's description), or `None`.
pub fn scan(body: &[u8]) -> Option<Fields<'_>> {
    scan_with(body, |rest| memchr::memchr(b'"', rest))
}

/// `scan`, the ciphertext's length found by `ciphertext_length` from the bytes after its
/// opening quote (the offset of its closing quote, or `None` to refuse the envelope): the
/// caller may decode the ciphertext on the way instead of searching it for the quote first.
/// It runs once per `ciphertext` member met, so at most once in an envelope the scan returns.
pub fn scan_with(
    body: &[u8],
    mut ciphertext_length: impl FnMut(&[u8]) -> Option<usize>,
) -> Option<Fields<'_>> {
    let mut cursor = Cursor {
        bytes: body,
        pos: 0,
    };
    let (mut version, mut algorithm, mut key_algorithm, mut payload_algorithm) =
        (None, None, None, None);
    let (mut processed_at, mut wrapped, mut payload_seen) = (None, None, false);
    let (mut ciphertext, mut nonce, mut tag) = (None, None, None);
    cursor.object(|cursor, name| match name {
        b"version" => once(&mut version, cursor.string_body()?),
        b"algorithm" => once(&mut algorithm, cursor.string_body()?),
        b"key_algorithm" => once(&mut key_algorithm, cursor.string_body()?),
        b"payload_algorithm" => once(&mut payload_algorithm, cursor.string_body()?),
        b"encrypted_aes_key" => once(&mut wrapped, cursor.string_body()?),
        b"processed_at" => once(&mut processed_at, cursor.number_or_null()?),
        b"encrypted_payload" if !payload_seen => {
            payload_seen = true;
            cursor.object(|cursor, name| match name {
                b"ciphertext" => once(
                    &mut ciphertext,
                    cursor.string_body_by(&mut ciphertext_length)?,
                ),
                b"nonce" => once(&mut nonce, cursor.string_body()?),
                b"tag" => once(&mut tag, cursor.string_body()?),
                _ => None,
            })
        }
        _ => None,
    })?;
    cursor.skip_ws();
    if cursor.pos != body.len() {
        return None;
    }
    Some(Fields {
        version: version?,
        algorithm: algorithm?,
        key_algorithm,
        payload_algorithm,
        processed_at,
        ciphertext: ciphertext?,
        nonce: nonce?,
        tag: tag?,
        encrypted_aes_key: wrapped?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = r#"{"version":"1.0","algorithm":"a","encrypted_payload":{"ciphertext":"Y3Q=","nonce":"bg==","tag":"dA=="},"encrypted_aes_key":"aw==","key_algorithm":"k","payload_algorithm":"p"}"#;

    #[test]
    fn reads_the_plain_shape_in_any_order_with_any_whitespace() {
        let fields = scan(PLAIN.as_bytes()).unwrap();
        assert_eq!(
            fields,
            Fields {
                version: b"1.0",
                algorithm: b"a",
                key_algorithm: Some(b"k"),
                payload_algorithm: Some(b"p"),
                processed_at: None,
                ciphertext: b"Y3Q=",
                nonce: b"bg==",
                tag: b"dA==",
                encrypted_aes_key: b"aw==",
            }
        );
        let spaced = " {\n\t\"processed_at\" : -1.5e3 ,\r\n\"encrypted_aes_key\":\"aw==\", \"version\":\"1.0\",\"algorithm\":\"a\",\"encrypted_payload\": { \"tag\":\"dA==\" , \"nonce\":\"bg==\",\"ciphertext\":\"\"} } \n";
        let fields = scan(spaced.as_bytes()).unwrap();
        assert_eq!(fields.processed_at, Some(&b"-1.5e3"[..]));
        assert_eq!(fields.ciphertext, b"");
        assert_eq!(
            (fields.key_algorithm, fields.payload_algorithm),
            (None, None)
        );
        let null = PLAIN.replacen('{', r#"{"processed_at":null,"#, 1);
        assert_eq!(
            scan(null.as_bytes()).unwrap().processed_at,
            Some(&b"null"[..])
        );
    }

    /// PLAIN with its version's body `1.0` replaced by `body`.
    fn with_version(body: &[u8]) -> Vec<u8> {
        let at = PLAIN.find("1.0").unwrap();
        let mut edited = PLAIN.as_bytes().to_vec();
        edited.splice(at..at + 3, body.iter().copied());
        edited
    }

    #[test]
    fn a_body_is_the_bytes_up_to_the_next_quote_unchecked() {
        // What a body holds is for `envelope::plain_parts` to check (by comparing it with a
        // label or decoding it as base64): the scan hands it over as it is.
        for body in [
            &b"1\\u002e0"[..],
            b"1.\xff\xfe",
            b"1.\xc3\xa9",
            b"\x01\n\t",
            b"\\",
        ] {
            assert_eq!(scan(&with_version(body)).unwrap().version, body);
        }
        // An escaped quote ends the body, and the scan reads on after it: here `"` stands
        // where a `,` must.
        assert_eq!(scan(&with_version(b"1.\\\"0")), None);
    }

    #[test]
    fn anything_else_is_left_to_the_strict_reader() {
        let edits: [(&str, &str); 21] = [
            ("\"version\"", "\"versio\\u006e\""),     // an escape in a name
            ("\"version\"", "\"versi\u{f6}n\""),      // a name that is not the protocol's
            ("\"k\"", "1"),                           // a label that is not a string
            ("\"a\",", "\"a\",\"x\":1,"),             // an unknown member
            ("\"a\",", "\"a\",\"version\":\"1.0\","), // a repeated member
            ("\"tag\":\"dA==\"", "\"tag\":\"dA==\",\"tag\":\"dA==\""),
            ("\"tag\":\"dA==\"", "\"tag\":\"dA==\",\"x\":\"\""),
            ("\"Y3Q=\"", "null"), // a payload field of another type
            ("{\"ciphertext\"", "[{\"ciphertext\""), // a payload that is not an object
            ("\"p\"}", "\"p\"},"), // a trailing comma
            ("\"p\"}", "\"p\"} x"), // trailing data
            ("\"p\"}", "\"p\""),  // unterminated
            ("\"algorithm\":", "\"algorithm\" "), // no colon
            ("\"1.0\",", "\"1.0\" "), // no comma
            (",\"algorithm\":\"a\"", ""), // a required field missing
            ("\"nonce\":\"bg==\",", ""), // a payload field missing
            ("{", "{\"processed_at\":01,"), // not a JSON number
            ("{", "{\"processed_at\":\"1\","), // a number field as a string
            ("{", "{\"processed_at\":nul,"),
            ("\"Y3Q=\"", "\"Y3Q="), // an unterminated string
            ("{", "\u{feff}{"),     // not JSON whitespace
        ];
        for (from, to) in edits {
            let edited = PLAIN.replacen(from, to, 1);
            assert_ne!(edited, PLAIN, "{from}");
            assert_eq!(scan(edited.as_bytes()), None, "{edited}");
        }
        let quoted = PLAIN.replacen("\"1.0\"", "'1.0'", 1);
        assert_eq!(scan(quoted.as_bytes()), None);
        for prefix in 0..PLAIN.len() {
            assert_eq!(scan(&PLAIN.as_bytes()[..prefix]), None);
        }
        // A byte that is not ASCII where the grammar wants structure, whitespace or a number.
        for at in PLAIN.match_indices([',', ':', '{', '}']).map(|(at, _)| at) {
            let mut edited = PLAIN.as_bytes().to_vec();
            edited.insert(at, 0xc2);
            assert_eq!(scan(&edited), None, "{at}");
        }
    }
}
