//! The common, well-formed response envelope read at memory speed: the fast path of
//! `envelope::open`.
//!
//! serde_json reads a string a byte (or word) at a time and `open`'s strict reader parses the
//! envelope, then its `encrypted_payload` again: the 1.4 MB base64 ciphertext of a 1 MiB reply
//! (3 MB when the endpoint escapes non-ASCII text) was read twice that way. Here the envelope's
//! fields are found with SIMD searches (memchr) for the closing quotes instead.
//!
//! It accepts only the plain shape: one object of the protocol's fields, each once, with no
//! escapes in names or values, string values (and `processed_at` a number or null), the
//! `encrypted_payload` object holding only `ciphertext`, `nonce` and `tag`, JSON whitespace
//! between tokens. Anything else, valid or not, is `None`, and `open` reads the body with its
//! strict reader instead, which then also words any error: so this path changes no outcome and
//! no message, it only reaches the same fields sooner. Whether a value's content is right
//! (control characters, base64, the version) is checked by `open` as for the strict reader.

#![forbid(unsafe_code)]

use crate::json_scan::scan_number;

/// The envelope's fields, borrowed from the body: string bodies between their quotes (no
/// escapes in them), `processed_at` as its raw number or `null`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    /// `version`.
    pub version: &'a str,
    /// `algorithm`.
    pub algorithm: &'a str,
    /// `key_algorithm`, when present.
    pub key_algorithm: Option<&'a str>,
    /// `payload_algorithm`, when present.
    pub payload_algorithm: Option<&'a str>,
    /// `processed_at`'s raw text (a number or `null`), when present.
    pub processed_at: Option<&'a str>,
    /// `encrypted_payload.ciphertext`.
    pub ciphertext: &'a str,
    /// `encrypted_payload.nonce`.
    pub nonce: &'a str,
    /// `encrypted_payload.tag`.
    pub tag: &'a str,
    /// `encrypted_aes_key`.
    pub encrypted_aes_key: &'a str,
}

/// Where the scan is in the body.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        let bytes = self.text.as_bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The byte after any whitespace, consumed when it is `byte`.
    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.text.as_bytes().get(self.pos) == Some(&byte)).then(|| self.pos += 1)
    }

    /// A string with no backslash in it: its body between the quotes.
    fn plain_string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let rest = self.text.as_bytes().get(self.pos..)?;
        let len = memchr::memchr(b'"', rest)?;
        if memchr::memchr(b'\\', &rest[..len]).is_some() {
            return None;
        }
        let body = self.text.get(self.pos..self.pos + len)?;
        self.pos += len + 1;
        Some(body)
    }

    /// A number (RFC 8259 grammar) or `null`: its raw text.
    fn number_or_null(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let start = self.pos;
        let end = if self.text.as_bytes()[start..].starts_with(b"null") {
            start + 4
        } else {
            scan_number(self.text.as_bytes(), start)?.end
        };
        self.pos = end;
        self.text.get(start..end)
    }

    /// An object's members, each name read plain and handed to `member` (which reads the
    /// value); `None` when the object is not of that shape or `member` refuses.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        loop {
            let name = self.plain_string()?;
            self.eat(b':')?;
            member(self, name)?;
            self.skip_ws();
            match self.text.as_bytes().get(self.pos)? {
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
fn once<'a>(slot: &mut Option<&'a str>, value: &'a str) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

/// The fields of a plain envelope (see the module's description), or `None`.
pub fn scan(text: &str) -> Option<Fields<'_>> {
    let mut cursor = Cursor { text, pos: 0 };
    let (mut version, mut algorithm, mut key_algorithm, mut payload_algorithm) =
        (None, None, None, None);
    let (mut processed_at, mut wrapped, mut payload_seen) = (None, None, false);
    let (mut ciphertext, mut nonce, mut tag) = (None, None, None);
    cursor.object(|cursor, name| match name {
        "version" => once(&mut version, cursor.plain_string()?),
        "algorithm" => once(&mut algorithm, cursor.plain_string()?),
        "key_algorithm" => once(&mut key_algorithm, cursor.plain_string()?),
        "payload_algorithm" => once(&mut payload_algorithm, cursor.plain_string()?),
        "encrypted_aes_key" => once(&mut wrapped, cursor.plain_string()?),
        "processed_at" => once(&mut processed_at, cursor.number_or_null()?),
        "encrypted_payload" if !payload_seen => {
            payload_seen = true;
            cursor.object(|cursor, name| match name {
                "ciphertext" => once(&mut ciphertext, cursor.plain_string()?),
                "nonce" => once(&mut nonce, cursor.plain_string()?),
                "tag" => once(&mut tag, cursor.plain_string()?),
                _ => None,
            })
        }
        _ => None,
    })?;
    cursor.skip_ws();
    if cursor.pos != text.len() {
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
        let fields = scan(PLAIN).unwrap();
        assert_eq!(
            fields,
            Fields {
                version: "1.0",
                algorithm: "a",
                key_algorithm: Some("k"),
                payload_algorithm: Some("p"),
                processed_at: None,
                ciphertext: "Y3Q=",
                nonce: "bg==",
                tag: "dA==",
                encrypted_aes_key: "aw==",
            }
        );
        let spaced = " {\n\t\"processed_at\" : -1.5e3 ,\r\n\"encrypted_aes_key\":\"aw==\", \"version\":\"1.0\",\"algorithm\":\"a\",\"encrypted_payload\": { \"tag\":\"dA==\" , \"nonce\":\"bg==\",\"ciphertext\":\"\"} } \n";
        let fields = scan(spaced).unwrap();
        assert_eq!(fields.processed_at, Some("-1.5e3"));
        assert_eq!(fields.ciphertext, "");
        assert_eq!(
            (fields.key_algorithm, fields.payload_algorithm),
            (None, None)
        );
        let null = PLAIN.replacen('{', r#"{"processed_at":null,"#, 1);
        assert_eq!(scan(&null).unwrap().processed_at, Some("null"));
    }

    #[test]
    fn anything_else_is_left_to_the_strict_reader() {
        let edits: [(&str, &str); 22] = [
            ("\"1.0\"", "\"1\\u002e0\""),             // an escape in a value
            ("\"version\"", "\"versio\\u006e\""),     // an escape in a name
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
            ("\"1.0\"", "'1.0'"),
        ];
        for (from, to) in edits {
            let edited = PLAIN.replacen(from, to, 1);
            assert_ne!(edited, PLAIN, "{from}");
            assert_eq!(scan(&edited), None, "{edited}");
        }
        for prefix in 0..PLAIN.len() {
            assert_eq!(scan(&PLAIN[..prefix]), None);
        }
    }
}
