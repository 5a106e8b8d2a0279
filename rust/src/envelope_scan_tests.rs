//! The fused scan of `envelope_scan` (one search per string for its closing quote, the bodies
//! proven by `checked_parts`) against the passes it replaced (`from_utf8` over the whole
//! envelope, then a search for the quote and one for a backslash per string): over generated
//! envelopes, both must take the same ones to the same parts and leave the rest to the strict
//! reader, and `open` must give the outcome `open_strict` gives.

use super::*;

/// The scan as it was before the fusion, kept word for word as the reference.
mod old {
    use crate::json_scan::scan_number;

    pub struct Fields<'a> {
        pub version: &'a str,
        pub algorithm: &'a str,
        pub key_algorithm: Option<&'a str>,
        pub payload_algorithm: Option<&'a str>,
        pub processed_at: Option<&'a str>,
        pub ciphertext: &'a str,
        pub nonce: &'a str,
        pub tag: &'a str,
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
        fn object(
            &mut self,
            mut member: impl FnMut(&mut Self, &'a str) -> Option<()>,
        ) -> Option<()> {
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
}

/// The parts the old passes took: the whole body checked as UTF-8 first, then the old scan,
/// then the same checks of the fields.
fn old_parts(body: &[u8], keypair: &ClientKeyPair) -> Option<Parts> {
    let found = old::scan(std::str::from_utf8(body).ok()?)?;
    let fields = Fields {
        version: found.version.as_bytes(),
        algorithm: found.algorithm.as_bytes(),
        key_algorithm: found.key_algorithm.map(str::as_bytes),
        payload_algorithm: found.payload_algorithm.map(str::as_bytes),
        processed_at: found.processed_at.map(str::as_bytes),
        ciphertext: found.ciphertext.as_bytes(),
        nonce: found.nonce.as_bytes(),
        tag: found.tag.as_bytes(),
        encrypted_aes_key: found.encrypted_aes_key.as_bytes(),
    };
    let ciphertext = decode_ciphertext(fields.ciphertext).ok()?;
    checked_parts(fields, ciphertext, keypair)
}

/// The fused path and the old passes agree on `body`: both leave it to the strict reader, or
/// both take it to the same parts (and then it is ASCII). Whether they took it.
fn paths_agree(body: &[u8]) -> bool {
    let kp = keypair();
    match (plain_parts(body, kp), old_parts(body, kp)) {
        (None, None) => false,
        (Some(new), Some(old)) => {
            assert_eq!(new.ciphertext.as_slice(), old.ciphertext.as_slice());
            assert_eq!(
                (new.nonce, new.tag, new.wrapped, new.processed_at),
                (old.nonce, old.tag, old.wrapped, old.processed_at)
            );
            assert_eq!(new.algorithm, old.algorithm);
            assert!(
                body.is_ascii(),
                "the fast path took a body that is not ASCII"
            );
            true
        }
        (new, old) => panic!(
            "fused path {} but old passes {}: {:?}",
            new.is_some(),
            old.is_some(),
            String::from_utf8_lossy(body)
        ),
    }
}

/// `open` gives what `open_strict` gives: the same plaintext or the same error.
fn open_agrees(body: &[u8]) -> CoreResult<Opened> {
    let (fast, strict) = (open(body, keypair()), open_strict(body, keypair()));
    match (&fast, &strict) {
        (Ok(a), Ok(b)) => assert_eq!(a.plaintext.as_slice(), b.plaintext.as_slice()),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("open {:?} but open_strict {:?}", fast.err(), strict.err()),
    }
    fast
}

fn keypair() -> &'static ClientKeyPair {
    static KP: std::sync::OnceLock<ClientKeyPair> = std::sync::OnceLock::new();
    KP.get_or_init(|| ClientKeyPair::generate(2048).unwrap())
}

/// A plaintext of `len` bytes sealed for `keypair()`: the envelope as `seal` writes it.
fn sealed(len: usize) -> Vec<u8> {
    let plain: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    let mut buf = LockedBuf::from_slice(&plain).unwrap();
    seal(&mut buf, &keypair().public_key().unwrap()).unwrap()
}

/// The same envelope with whitespace between every token and a `processed_at` member.
fn spaced(envelope: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(envelope).unwrap();
    let spaced = text
        .replace("\":\"", "\" :\n\t\"")
        .replace("\",\"", "\"\r\n, \"")
        .replacen('{', "{ \"processed_at\" : 1700000000.25 ,", 1);
    format!(" {spaced} \n").into_bytes()
}

/// Where the ciphertext's body starts and ends (its closing quote) in `envelope`.
fn ciphertext_span(envelope: &[u8]) -> (usize, usize) {
    const NAME: &[u8] = b"\"ciphertext\"";
    let name = envelope
        .windows(NAME.len())
        .position(|w| w == NAME)
        .unwrap();
    let start = name
        + envelope[name + NAME.len()..]
            .iter()
            .position(|&b| b == b'"')
            .unwrap();
    let start = start + NAME.len() + 1;
    let end = start + envelope[start..].iter().position(|&b| b == b'"').unwrap();
    (start, end)
}

/// Sealed envelopes of a few plaintext sizes (an empty ciphertext, one shorter than a SIMD
/// block, several blocks), compact and spaced.
fn envelopes() -> Vec<Vec<u8>> {
    [0, 1, 20, 190, 3000]
        .into_iter()
        .flat_map(|len| {
            let compact = sealed(len);
            let spaced = spaced(&compact);
            [compact, spaced]
        })
        .collect()
}

#[test]
fn valid_envelopes_take_the_fast_path_to_the_same_parts() {
    for envelope in envelopes() {
        assert!(paths_agree(&envelope));
        let opened = open_agrees(&envelope).unwrap();
        let (start, end) = ciphertext_span(&envelope);
        assert_eq!(
            opened.plaintext.len(),
            B64.decoded_length(&envelope[start..end]).unwrap()
        );
    }
}

/// Byte sequences that are not UTF-8 (a lone continuation byte, bytes never in UTF-8, a
/// sequence cut short, a surrogate, an overlong form), then UTF-8 that is not ASCII.
const NOT_UTF8: [&[u8]; 6] = [
    b"\x80",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
];
const NOT_ASCII: [&[u8]; 3] = [
    "\u{e9}".as_bytes(),
    "\u{20ac}".as_bytes(),
    "\u{1d11e}".as_bytes(),
];

#[test]
fn a_byte_that_is_not_ascii_in_or_around_the_ciphertext_goes_to_the_strict_reader() {
    let mut checked = 0;
    for envelope in [sealed(190), spaced(&sealed(20))] {
        let (start, end) = ciphertext_span(&envelope);
        // From inside the name before the body to past the `,"nonce":` after it.
        for at in start - 8..end + 12 {
            for bad in NOT_UTF8.iter().chain(&NOT_ASCII) {
                let overwritten = [&envelope[..at], bad, &envelope[at + bad.len()..]].concat();
                let inserted = [&envelope[..at], bad, &envelope[at..]].concat();
                for body in [overwritten, inserted] {
                    assert!(!paths_agree(&body), "{at}");
                    let err = open_agrees(&body).err().expect("refused");
                    assert!(matches!(err, CoreError::Envelope(_)), "{err:?}");
                    let not_utf8 = std::str::from_utf8(&body).is_err();
                    assert_eq!(err.to_string().contains("not UTF-8"), not_utf8, "{at}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 9 * 2 * 250, "{checked}");
}

#[test]
fn a_quote_or_a_backslash_inside_the_ciphertext_goes_to_the_strict_reader() {
    let envelope = sealed(190);
    let (start, end) = ciphertext_span(&envelope);
    for at in start..end {
        let char_at = envelope[at];
        let escaped = format!("\\u{:04x}", char_at);
        let edits: [(&[u8], usize); 5] = [
            (b"\"", 1),              // the string ends early
            (b"\\", 1),              // an escape of the next character
            (b"\\\"", 0),            // an escaped quote
            (b"\\\\", 0),            // an escaped backslash
            (escaped.as_bytes(), 1), // the same character, escaped: the same string
        ];
        for (edit, replaced) in edits {
            let body = [&envelope[..at], edit, &envelope[at + replaced..]].concat();
            assert!(!paths_agree(&body), "{at}");
            let outcome = open_agrees(&body);
            if edit == escaped.as_bytes() {
                // Valid JSON spelling the same ciphertext: the strict reader opens it.
                assert_eq!(outcome.unwrap().plaintext.len(), 190);
            } else {
                assert!(matches!(outcome, Err(CoreError::Envelope(_))), "{at}");
            }
        }
    }
}

#[test]
fn a_truncated_envelope_goes_to_the_strict_reader() {
    for envelope in [sealed(20), spaced(&sealed(1)), sealed(190)] {
        // Every prefix that cuts off at least the closing brace.
        let closing = envelope.iter().rposition(|&b| b == b'}').unwrap();
        for len in 0..=closing {
            let body = &envelope[..len];
            assert!(!paths_agree(body), "{len}");
            assert!(matches!(open_agrees(body), Err(CoreError::Envelope(_))));
        }
    }
}
