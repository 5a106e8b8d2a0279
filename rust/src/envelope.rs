//! The hybrid envelope of PROTOCOL.md sections 2 and 3, at the byte level.
//!
//! `seal`: fresh AES-256 key (locked memory) and 12-byte nonce per call, AES-256-GCM in place
//! without associated data, the tag carried separately, the key wrapped with RSA-OAEP
//! (SHA-256, MGF1-SHA-256, empty label). `open`: strict parsing first (sizes, JSON, field
//! types, base64, lengths, version and algorithm), then unwrap and decrypt in locked memory.
//! Every unwrap or authentication failure is the one opaque `CoreError::Crypto`.
//!
//! On key hygiene inside aws-lc: the AES-GCM context (whose key schedule starts with the raw
//! key) lives in an `EVP_AEAD_CTX` allocated with `OPENSSL_malloc` and freed with
//! `EVP_AEAD_CTX_free`; the OAEP scratch buffers likewise. aws-lc's default `OPENSSL_free`
//! cleanses every allocation, and with `lc_heap` installed (module init) those allocations also
//! sit in locked, dump-excluded slabs and are zeroed on free by `lc_heap` itself.

#![forbid(unsafe_code)]

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand;
use base64_simd::{AsOut, STANDARD as B64};
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Number;

use crate::base64_avx512;
use crate::envelope_scan::Fields;
use crate::error::{CoreError, CoreResult};
use crate::fill::{vec_filled_by, Fill};
use crate::keys::{ClientKeyPair, ServerPublicKey};
use crate::secret::LockedBuf;

/// Largest serialized request plaintext: 10 MiB.
pub const MAX_PLAINTEXT_BYTES: usize = 10 * 1024 * 1024;
/// Largest envelope `open` parses: the base64 of MAX_PLAINTEXT_BYTES plus 64 KiB of framing.
pub const MAX_ENVELOPE_BYTES: usize = MAX_PLAINTEXT_BYTES.div_ceil(3) * 4 + 64 * 1024;

/// The envelope's `version` (PROTOCOL.md section 2).
pub const VERSION: &str = "1.0";
/// The envelope's `algorithm`.
pub const ALGORITHM: &str = "hybrid-aes256-rsa4096";
/// The envelope's `key_algorithm`: how the AES key is wrapped.
pub const KEY_ALGORITHM: &str = "RSA-OAEP-SHA256";
/// The envelope's `payload_algorithm`: how the payload is encrypted.
pub const PAYLOAD_ALGORITHM: &str = "AES-256-GCM";

/// AES-256 key length in bytes.
pub const AES_KEY_LEN: usize = 32;
/// AES-GCM tag length in bytes.
pub const TAG_LEN: usize = 16;

/// A decrypted response.
pub struct Opened {
    /// The plaintext JSON, in locked memory.
    pub plaintext: LockedBuf,
    /// The envelope's `processed_at`, when present and not null.
    pub processed_at: Option<Number>,
    /// The envelope's `algorithm` (always `ALGORITHM` once accepted).
    pub algorithm: String,
}

// ---- primitives (also what the Wycheproof tests exercise) ----------------------------------

fn gcm_key(key: &[u8]) -> CoreResult<LessSafeKey> {
    let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| CoreError::Crypto)?;
    Ok(LessSafeKey::new(unbound))
}

/// AES-256-GCM encryption of `in_out` in place; returns the 16-byte tag.
pub fn gcm_seal_in_place(
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    in_out: &mut [u8],
) -> CoreResult<[u8; TAG_LEN]> {
    let _lc = crate::lc_heap::enter();
    let key = gcm_key(key)?;
    let tag = key.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(*nonce),
        Aad::from(aad),
        in_out,
    )?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// AES-256-GCM decryption in place. `buf` holds the ciphertext; the tag is appended to it, and
/// on success `buf` is truncated to the plaintext. Any failure is `CoreError::Crypto`.
pub fn gcm_open_in_place(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    buf: &mut LockedBuf,
    tag: &[u8],
) -> CoreResult<()> {
    let _lc = crate::lc_heap::enter();
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CoreError::Crypto)?;
    if tag.len() != TAG_LEN {
        return Err(CoreError::Crypto);
    }
    let key = gcm_key(key)?;
    buf.extend_from_slice(tag)?;
    let plain_len = key
        .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())?
        .len();
    buf.truncate(plain_len);
    Ok(())
}

/// RSA-OAEP unwrap of `wrapped` into locked memory. Any failure is `CoreError::Crypto`.
pub fn oaep_unwrap(wrapped: &[u8], keypair: &ClientKeyPair) -> CoreResult<LockedBuf> {
    let _lc = crate::lc_heap::enter();
    let mut out = LockedBuf::zeroed(keypair.modulus_bytes())?;
    let n = keypair.decrypt_oaep(wrapped, out.as_mut_slice())?;
    out.truncate(n);
    Ok(out)
}

// ---- seal ----------------------------------------------------------------------------------

/// The envelope's fixed framing, in order; the four base64 fields go between the pieces.
const FRAME: [&str; 5] = [
    r#"{"version":"1.0","algorithm":"hybrid-aes256-rsa4096","encrypted_payload":{"ciphertext":""#,
    r#"","nonce":""#,
    r#"","tag":""#,
    r#""},"encrypted_aes_key":""#,
    r#"","key_algorithm":"RSA-OAEP-SHA256","payload_algorithm":"AES-256-GCM"}"#,
];

/// Exact size of the envelope `seal_into` writes for a plaintext of `plaintext_len` bytes.
pub fn sealed_len(plaintext_len: usize, server_key: &ServerPublicKey) -> usize {
    FRAME.iter().map(|f| f.len()).sum::<usize>()
        + B64.encoded_length(plaintext_len)
        + B64.encoded_length(NONCE_LEN)
        + B64.encoded_length(TAG_LEN)
        + B64.encoded_length(server_key.modulus_bytes())
}

fn short_output() -> CoreError {
    CoreError::Memory("the envelope buffer is too small".into())
}

/// Append the standard base64 of `data`, written by the SIMD encoder straight into `out`.
fn put_b64(out: &mut Fill<'_>, data: &[u8]) -> CoreResult<()> {
    out.put_with(B64.encoded_length(data.len()), |room| {
        &*base64_avx512::encode(data, room)
    })
    .ok_or_else(short_output)
}

/// Encrypt `plaintext` (in place: it holds the ciphertext afterwards) for `server_key` and write
/// the envelope's UTF-8 JSON, exactly as PROTOCOL.md section 2, into `out`, which must be a
/// fresh writer of `sealed_len` bytes (so the caller can hand us the final Python `bytes` to
/// fill, never zeroed first).
pub fn seal_into(
    plaintext: &mut LockedBuf,
    server_key: &ServerPublicKey,
    out: &mut Fill<'_>,
) -> CoreResult<()> {
    let _lc = crate::lc_heap::enter();
    if plaintext.len() > MAX_PLAINTEXT_BYTES {
        return Err(CoreError::RequestTooLarge(format!(
            "the serialized request is {} bytes; the limit is {MAX_PLAINTEXT_BYTES} bytes (10 MiB)",
            plaintext.len()
        )));
    }
    if out.filled() != 0 || out.size() != sealed_len(plaintext.len(), server_key) {
        return Err(short_output());
    }
    let mut key = LockedBuf::zeroed(AES_KEY_LEN)?;
    rand::fill(key.as_mut_slice()).map_err(|_| CoreError::Memory("no randomness".into()))?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce).map_err(|_| CoreError::Memory("no randomness".into()))?;

    let tag = gcm_seal_in_place(&key, &nonce, b"", plaintext.as_mut_slice())?;
    let mut wrapped = vec![0u8; server_key.modulus_bytes()];
    let wrapped_len = server_key.encrypt_oaep(&key, &mut wrapped)?;
    drop(key);
    if wrapped_len != wrapped.len() {
        return Err(CoreError::Crypto);
    }

    let frame =
        |out: &mut Fill<'_>, piece: &str| out.put(piece.as_bytes()).ok_or_else(short_output);
    frame(out, FRAME[0])?;
    put_b64(out, plaintext.as_slice())?;
    frame(out, FRAME[1])?;
    put_b64(out, &nonce)?;
    frame(out, FRAME[2])?;
    put_b64(out, &tag)?;
    frame(out, FRAME[3])?;
    put_b64(out, &wrapped)?;
    frame(out, FRAME[4])?;
    if !out.is_full() {
        return Err(short_output());
    }
    Ok(())
}

/// `seal_into` a fresh vector.
pub fn seal(plaintext: &mut LockedBuf, server_key: &ServerPublicKey) -> CoreResult<Vec<u8>> {
    let len = sealed_len(plaintext.len(), server_key);
    vec_filled_by(len, |out| seal_into(plaintext, server_key, out))?.ok_or_else(short_output)
}

// ---- open ----------------------------------------------------------------------------------

fn bad(msg: impl Into<String>) -> CoreError {
    CoreError::Envelope(msg.into())
}

/// A JSON object's members, borrowed from the body: every value stays raw (the 1.4 MB base64
/// ciphertext of a 1 MiB reply is never copied before it is checked), a key named twice is
/// refused rather than silently overridden by its last occurrence, and members the protocol does
/// not name are kept only to check their nesting depth.
struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut seen = std::collections::HashSet::new();
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    if !seen.insert(key.clone()) {
                        // The server chose the name: only the protocol's own are repeated in
                        // the message (any other could be megabytes of control characters).
                        let message = if is_protocol_field(&key) {
                            format!("duplicate field `{key}`")
                        } else {
                            "a member name is repeated".to_owned()
                        };
                        return Err(serde::de::Error::custom(message));
                    }
                    members.push((key, value));
                }
                Ok(RawObject(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

impl<'a> RawObject<'a> {
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| *value)
    }

    /// Members outside `known` may carry anything, but no deeper than MAX_JSON_DEPTH.
    fn check_unknown_depth(&self, known: &[&str], what: &str) -> CoreResult<()> {
        for (key, value) in &self.0 {
            if !known.contains(&key.as_ref()) && nesting_depth(value.get()) > MAX_JSON_DEPTH {
                return Err(bad(format!(
                    "{what} nests deeper than {MAX_JSON_DEPTH} levels"
                )));
            }
        }
        Ok(())
    }
}

/// Deepest bracket nesting of a JSON text that serde_json already validated (strings skipped).
fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in text.as_bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Deepest nesting of lists/dicts the core writes and reads, in an envelope or a plaintext
/// (the outermost container is level 1).
pub const MAX_JSON_DEPTH: usize = 128;
const ENVELOPE_FIELDS: [&str; 7] = [
    "version",
    "algorithm",
    "key_algorithm",
    "payload_algorithm",
    "processed_at",
    "encrypted_payload",
    "encrypted_aes_key",
];
const PAYLOAD_FIELDS: [&str; 3] = ["ciphertext", "nonce", "tag"];

/// A member name the protocol defines (safe to name in an error message).
fn is_protocol_field(name: &str) -> bool {
    ENVELOPE_FIELDS.contains(&name) || PAYLOAD_FIELDS.contains(&name)
}

/// Parse `text` as a JSON object; errors name `what`, never content.
fn object_of<'a>(text: &'a str, what: &str) -> CoreResult<RawObject<'a>> {
    serde_json::from_str(text).map_err(|e| {
        if !text.trim_start().starts_with('{') {
            bad(format!("{what} must be a JSON object"))
        } else if e.classify() == serde_json::error::Category::Data {
            // Members are read raw, so the one data error an object can have is a repeated key.
            let message = e.to_string();
            let rule = message
                .split(" at line ")
                .next()
                .unwrap_or("a field is repeated");
            bad(format!("{what} is ambiguous: {rule}"))
        } else {
            bad(format!(
                "{what} is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        }
    })
}

fn field<'a>(raw: Option<&'a RawValue>, path: &str) -> CoreResult<&'a RawValue> {
    raw.ok_or_else(|| bad(format!("envelope field '{path}' is missing")))
}

/// A string field, borrowed from the body unless it holds JSON escapes.
fn string_field<'a>(raw: Option<&'a RawValue>, path: &str) -> CoreResult<Cow<'a, str>> {
    let text = field(raw, path)?.get();
    // serde_json checked the raw value already: a string without a backslash is its body
    // between the quotes, found without reading the 1.4 MB of a 1 MiB reply's ciphertext a
    // third time byte by byte (a SIMD search for the backslash instead).
    if let Some(body) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        if memchr::memchr(b'\\', body.as_bytes()).is_none() {
            return Ok(Cow::Borrowed(body));
        }
    }
    if let Ok(s) = serde_json::from_str::<&'a str>(text) {
        return Ok(Cow::Borrowed(s));
    }
    serde_json::from_str::<String>(text)
        .map(Cow::Owned)
        .map_err(|_| bad(format!("envelope field '{path}' must be a string")))
}

/// Check an optional algorithm label: absent is fine, anything but `expected` is refused.
fn optional_label(raw: Option<&RawValue>, name: &str, expected: &str) -> CoreResult<()> {
    if raw.is_none() {
        return Ok(());
    }
    if string_field(raw, name)? == expected {
        Ok(())
    } else {
        Err(bad(format!(
            "unsupported envelope {name}: only \"{expected}\" is accepted"
        )))
    }
}

/// Strict standard base64 (padding required, canonical, no whitespace) into a plain vector.
fn b64_public(text: &str, path: &str) -> CoreResult<Vec<u8>> {
    B64.decode_to_vec(text).map_err(|_| {
        bad(format!(
            "envelope field '{path}' is not valid standard base64"
        ))
    })
}

/// What `open` decrypts, read from the envelope and checked.
struct Parts {
    /// The decoded ciphertext, in locked memory with room for the tag.
    ciphertext: LockedBuf,
    nonce: Vec<u8>,
    tag: Vec<u8>,
    wrapped: Vec<u8>,
    processed_at: Option<Number>,
    algorithm: String,
}

/// Check and decrypt a response envelope with `keypair`.
pub fn open(body: &[u8], keypair: &ClientKeyPair) -> CoreResult<Opened> {
    open_with(body, keypair, true)
}

/// `open` without its fast path (`plain_parts`): the reference the fuzz target and the tests
/// hold that path to (same outcome, same error text).
pub fn open_strict(body: &[u8], keypair: &ClientKeyPair) -> CoreResult<Opened> {
    open_with(body, keypair, false)
}

fn open_with(body: &[u8], keypair: &ClientKeyPair, fast: bool) -> CoreResult<Opened> {
    let _lc = crate::lc_heap::enter();
    if body.len() > MAX_ENVELOPE_BYTES {
        return Err(CoreError::ResponseTooLarge(format!(
            "the response envelope is {} bytes; the limit is {MAX_ENVELOPE_BYTES} bytes",
            body.len()
        )));
    }
    // The plain shape at memory speed (an envelope it opens is ASCII, so needs no UTF-8
    // pass); anything else (and any fault) through the strict reader, which also words the
    // error.
    let parts = match fast.then(|| plain_parts(body, keypair)).flatten() {
        Some(parts) => parts,
        None => {
            let text = std::str::from_utf8(body)
                .map_err(|_| bad("the response envelope is not valid JSON (it is not UTF-8)"))?;
            strict_parts(text, keypair)?
        }
    };
    let mut buf = parts.ciphertext;
    let key = oaep_unwrap(&parts.wrapped, keypair)?;
    if key.len() != AES_KEY_LEN {
        return Err(CoreError::Crypto);
    }
    gcm_open_in_place(&key, &parts.nonce, b"", &mut buf, &parts.tag)?;
    Ok(Opened {
        plaintext: buf,
        processed_at: parts.processed_at,
        algorithm: parts.algorithm,
    })
}

/// The parts of a plain envelope (`envelope_scan`) that passes every check `strict_parts`
/// makes, or `None` for `strict_parts` to read (and refuse, if it must) instead.
///
/// The scan leaves the string bodies unchecked: each is compared with an ASCII label here or
/// decoded as strict base64 (whose alphabet is ASCII without a backslash), so the parts come
/// only from an ASCII envelope whose strings hold no escape, read as the strict reader reads it.
///
/// The ciphertext is decoded as the scan meets it (`decode_to_quote`): the megabytes of its
/// base64 are read once, not searched for their closing quote first.
fn plain_parts(body: &[u8], keypair: &ClientKeyPair) -> Option<Parts> {
    let mut ciphertext = None;
    let fields = crate::envelope_scan::scan_with(body, |rest| {
        let (decoded, len) = decode_to_quote(rest)?;
        ciphertext = Some(decoded);
        Some(len)
    })?;
    checked_parts(fields, ciphertext?, keypair)
}

/// The base64 string body at the start of `rest` (up to the next quote) decoded into locked
/// memory with room for the tag, and the body's length; `None` if there is no quote or the
/// body is not strict standard base64. Whole blocks of the alphabet go to the vector steps as
/// they are read; the rest, from the first block holding anything else (the quote, padding),
/// is searched for the quote and decoded as `decode_ciphertext` decodes it.
fn decode_to_quote(rest: &[u8]) -> Option<(LockedBuf, usize)> {
    // Room for the longest body `rest` can hold: sized by the received envelope (bounded by
    // MAX_ENVELOPE_BYTES), overwritten by the decoding; what is left over is wiped by the
    // truncate.
    let mut buf = LockedBuf::for_overwrite(rest.len() / 4 * 3 + TAG_LEN).ok()?;
    let (read, written) = base64_avx512::decode_blocks(rest, buf.as_mut_slice().as_out());
    let len = read + memchr::memchr(b'"', &rest[read..])?;
    let tail = B64
        .decode(&rest[read..len], buf.as_mut_slice()[written..].as_out())
        .ok()?
        .len();
    buf.truncate(written + tail);
    Some((buf, len))
}

/// `plain_parts`' checks of the fields the scan found (the ciphertext already decoded).
fn checked_parts(
    fields: Fields<'_>,
    ciphertext: LockedBuf,
    keypair: &ClientKeyPair,
) -> Option<Parts> {
    let labels_fit = fields.version == VERSION.as_bytes()
        && fields.algorithm == ALGORITHM.as_bytes()
        && fields
            .key_algorithm
            .is_none_or(|label| label == KEY_ALGORITHM.as_bytes())
        && fields
            .payload_algorithm
            .is_none_or(|label| label == PAYLOAD_ALGORITHM.as_bytes());
    if !labels_fit {
        return None;
    }
    let processed_at = match fields.processed_at {
        None => None,
        Some(raw) => serde_json::from_slice::<Option<Number>>(raw).ok()?,
    };
    let decoded = |text: &[u8], len: usize| B64.decode_to_vec(text).ok().filter(|v| v.len() == len);
    Some(Parts {
        nonce: decoded(fields.nonce, NONCE_LEN)?,
        tag: decoded(fields.tag, TAG_LEN)?,
        wrapped: decoded(fields.encrypted_aes_key, keypair.modulus_bytes())?,
        ciphertext,
        processed_at,
        algorithm: ALGORITHM.to_owned(),
    })
}

/// The base64 ciphertext decoded straight into locked memory, with room for the tag.
fn decode_ciphertext(text: &[u8]) -> CoreResult<LockedBuf> {
    let not_b64 =
        || bad("envelope field 'encrypted_payload.ciphertext' is not valid standard base64");
    let ct_len = B64.decoded_length(text).map_err(|_| not_b64())?;
    // Overwritten by the decoding (and the tag); what is left over is wiped by the truncate.
    let mut buf = LockedBuf::for_overwrite(ct_len + TAG_LEN)?;
    let written = base64_avx512::decode(text, buf.as_mut_slice().as_out())
        .ok_or_else(not_b64)?
        .len();
    buf.truncate(written);
    Ok(buf)
}

/// The envelope read by the strict reader, checked field by field in the protocol's order;
/// errors name the field and the rule, never content.
fn strict_parts(text: &str, keypair: &ClientKeyPair) -> CoreResult<Parts> {
    let top = object_of(text, "the response envelope")?;
    top.check_unknown_depth(&ENVELOPE_FIELDS, "the response envelope")?;

    // Version and algorithm first: no downgrade, whatever else the envelope says.
    let version = string_field(top.get("version"), "version")?;
    if version != VERSION {
        return Err(bad(format!(
            "unsupported envelope version: only \"{VERSION}\" is accepted"
        )));
    }
    let algorithm = string_field(top.get("algorithm"), "algorithm")?;
    if algorithm != ALGORITHM {
        return Err(bad(format!(
            "unsupported envelope algorithm: only \"{ALGORITHM}\" is accepted"
        )));
    }
    optional_label(top.get("key_algorithm"), "key_algorithm", KEY_ALGORITHM)?;
    optional_label(
        top.get("payload_algorithm"),
        "payload_algorithm",
        PAYLOAD_ALGORITHM,
    )?;

    let processed_at = match top.get("processed_at") {
        None => None,
        Some(raw) => serde_json::from_str::<Option<Number>>(raw.get())
            .map_err(|_| bad("envelope field 'processed_at' must be a number or null"))?,
    };

    let payload = object_of(
        field(top.get("encrypted_payload"), "encrypted_payload")?.get(),
        "envelope field 'encrypted_payload'",
    )?;
    payload.check_unknown_depth(&PAYLOAD_FIELDS, "envelope field 'encrypted_payload'")?;
    let ciphertext_b64 = string_field(payload.get("ciphertext"), "encrypted_payload.ciphertext")?;
    let nonce = b64_public(
        &string_field(payload.get("nonce"), "encrypted_payload.nonce")?,
        "encrypted_payload.nonce",
    )?;
    if nonce.len() != NONCE_LEN {
        return Err(bad(format!(
            "envelope field 'encrypted_payload.nonce' must decode to {NONCE_LEN} bytes, not {}",
            nonce.len()
        )));
    }
    let tag = b64_public(
        &string_field(payload.get("tag"), "encrypted_payload.tag")?,
        "encrypted_payload.tag",
    )?;
    if tag.len() != TAG_LEN {
        return Err(bad(format!(
            "envelope field 'encrypted_payload.tag' must decode to {TAG_LEN} bytes, not {}",
            tag.len()
        )));
    }
    let wrapped = b64_public(
        &string_field(top.get("encrypted_aes_key"), "encrypted_aes_key")?,
        "encrypted_aes_key",
    )?;
    if wrapped.len() != keypair.modulus_bytes() {
        return Err(bad(format!(
            "envelope field 'encrypted_aes_key' must decode to {} bytes (the modulus), not {}",
            keypair.modulus_bytes(),
            wrapped.len()
        )));
    }

    Ok(Parts {
        ciphertext: decode_ciphertext(ciphertext_b64.as_bytes())?,
        nonce,
        tag,
        wrapped,
        processed_at,
        algorithm: algorithm.into_owned(),
    })
}

#[cfg(test)]
#[path = "envelope_scan_tests.rs"]
mod envelope_scan_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use serde_json::Value;
    use std::sync::OnceLock;

    fn keypair() -> &'static ClientKeyPair {
        static KP: OnceLock<ClientKeyPair> = OnceLock::new();
        KP.get_or_init(|| ClientKeyPair::generate(2048).unwrap())
    }

    fn sealed(plain: &[u8]) -> Value {
        let mut buf = LockedBuf::from_slice(plain).unwrap();
        let env = seal(&mut buf, &keypair().public_key().unwrap()).unwrap();
        serde_json::from_slice(&env).unwrap()
    }

    fn open_value(v: &Value) -> CoreResult<Opened> {
        open(&serde_json::to_vec(v).unwrap(), keypair())
    }

    fn envelope_err(v: &Value) -> String {
        match open_value(v) {
            Err(CoreError::Envelope(m)) => m,
            Err(e) => panic!("expected an envelope error, got {e:?}"),
            Ok(_) => panic!("expected an envelope error, got success"),
        }
    }

    #[test]
    fn round_trip_and_exact_shape() {
        let v = sealed(br#"{"model":"m","messages":[]}"#);
        let obj = v.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [
                "algorithm",
                "encrypted_aes_key",
                "encrypted_payload",
                "key_algorithm",
                "payload_algorithm",
                "version"
            ]
        );
        assert_eq!(v["version"], "1.0");
        assert_eq!(v["algorithm"], "hybrid-aes256-rsa4096");
        assert_eq!(v["key_algorithm"], "RSA-OAEP-SHA256");
        assert_eq!(v["payload_algorithm"], "AES-256-GCM");
        let opened = open_value(&v).unwrap();
        assert_eq!(
            opened.plaintext.as_slice(),
            br#"{"model":"m","messages":[]}"#
        );
        assert!(opened.processed_at.is_none());
        assert_eq!(opened.algorithm, ALGORITHM);
    }

    #[test]
    fn fresh_key_and_nonce_every_call() {
        let a = sealed(b"same");
        let b = sealed(b"same");
        assert_ne!(
            a["encrypted_payload"]["nonce"],
            b["encrypted_payload"]["nonce"]
        );
        assert_ne!(a["encrypted_aes_key"], b["encrypted_aes_key"]);
        assert_ne!(
            a["encrypted_payload"]["ciphertext"],
            b["encrypted_payload"]["ciphertext"]
        );
    }

    #[test]
    fn processed_at_is_carried() {
        let mut v = sealed(b"{}");
        v["processed_at"] = serde_json::json!(1700000000.25);
        assert_eq!(
            open_value(&v).unwrap().processed_at.unwrap().as_f64(),
            Some(1700000000.25)
        );
        v["processed_at"] = serde_json::json!("yesterday");
        assert!(envelope_err(&v).contains("processed_at"));
    }

    #[test]
    fn version_and_algorithms_are_pinned() {
        let good = sealed(b"{}");
        for (field, value) in [
            ("version", serde_json::json!("2.0")),
            ("version", serde_json::json!(1.0)),
            ("algorithm", serde_json::json!("hybrid-aes128-rsa2048")),
            ("key_algorithm", serde_json::json!("RSA-OAEP-SHA1")),
            ("payload_algorithm", serde_json::json!("AES-128-GCM")),
        ] {
            let mut v = good.clone();
            v[field] = value;
            assert!(envelope_err(&v).contains(field), "{field}");
        }
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove("key_algorithm");
        v.as_object_mut().unwrap().remove("payload_algorithm");
        assert!(open_value(&v).is_ok(), "the optional labels may be absent");
    }

    #[test]
    fn field_rules() {
        let good = sealed(b"{}");
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "nonce",
                Box::new(|v| v["encrypted_payload"]["nonce"] = "AAAA".into()),
            ),
            (
                "nonce",
                Box::new(|v| v["encrypted_payload"]["nonce"] = "not base64!".into()),
            ),
            (
                "tag",
                Box::new(|v| v["encrypted_payload"]["tag"] = "AAAAAAAAAAAAAAAAAAAA".into()),
            ),
            (
                "tag",
                Box::new(|v| v["encrypted_payload"]["tag"] = 5.into()),
            ),
            (
                "ciphertext",
                Box::new(|v| v["encrypted_payload"]["ciphertext"] = "A===".into()),
            ),
            (
                // Non-zero trailing bits: not the canonical encoding of any byte string.
                "ciphertext",
                Box::new(|v| v["encrypted_payload"]["ciphertext"] = "Zh==".into()),
            ),
            (
                "ciphertext",
                Box::new(|v| {
                    v["encrypted_payload"]
                        .as_object_mut()
                        .unwrap()
                        .remove("ciphertext");
                }),
            ),
            (
                "encrypted_aes_key",
                Box::new(|v| v["encrypted_aes_key"] = "AAAA".into()),
            ),
            (
                "encrypted_payload",
                Box::new(|v| v["encrypted_payload"] = "x".into()),
            ),
        ];
        for (name, mutate) in cases {
            let mut v = good.clone();
            mutate(&mut v);
            assert!(envelope_err(&v).contains(name), "{name}");
        }
        // Unpadded base64 is refused (strict standard alphabet with padding). The 16-byte tag
        // is 24 characters ending in "==" (the 12-byte nonce has no padding to strip).
        let mut v = good.clone();
        let tag = v["encrypted_payload"]["tag"].as_str().unwrap().to_owned();
        assert!(tag.ends_with("=="));
        v["encrypted_payload"]["tag"] = tag.trim_end_matches('=').to_owned().into();
        assert!(envelope_err(&v).contains("tag"));
        assert!(matches!(
            open(b"[1,2]", keypair()),
            Err(CoreError::Envelope(_))
        ));
        assert!(matches!(
            open(b"{not json", keypair()),
            Err(CoreError::Envelope(_))
        ));
        assert!(matches!(
            open(b"\xff\xfe", keypair()),
            Err(CoreError::Envelope(_))
        ));
    }

    #[test]
    fn a_field_named_twice_is_refused() {
        // Last-one-wins would let a tampering proxy smuggle a second value past one reader and
        // not another; the envelope must be unambiguous.
        let good = serde_json::to_string(&sealed(b"{}")).unwrap();
        let twice_top = good.replacen('{', "{\"version\":\"0.9\",", 1);
        let err = open(twice_top.as_bytes(), keypair())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("duplicate field `version`"), "{err}");
        let twice_nested = good.replacen(
            "\"encrypted_payload\":{",
            "\"encrypted_payload\":{\"nonce\":\"AAAAAAAAAAAAAAAA\",",
            1,
        );
        assert_ne!(twice_nested, good);
        let err = open(twice_nested.as_bytes(), keypair())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("duplicate field `nonce`"), "{err}");
    }

    #[test]
    fn escaped_string_fields_still_open() {
        // JSON escapes (`\u0031` for '1', `\/` as some encoders write in base64) spell the
        // same strings, so the envelope still opens: escaped fields are read owned, not borrowed.
        let good = serde_json::to_string(&sealed(b"{}")).unwrap();
        let escaped = good.replace("\"1.0\"", "\"\\u0031.0\"").replace('/', "\\/");
        assert_ne!(escaped, good);
        assert!(open(escaped.as_bytes(), keypair()).is_ok());
    }

    #[test]
    fn whitespace_around_string_fields_is_not_part_of_them() {
        // The borrowed fast path reads a field's body between its quotes: whitespace the raw
        // value might carry would make the base64 invalid or the version unequal.
        let good = serde_json::to_string(&sealed(b"{\"k\":1}")).unwrap();
        let spaced = good
            .replace("\":\"", "\" :\n\t \"")
            .replace("\",\"", "\"  ,\r\n\"")
            .replace("\"}", "\" \n}");
        assert_ne!(spaced, good);
        let opened = open(format!(" \n{spaced} \n").as_bytes(), keypair()).unwrap();
        assert_eq!(opened.plaintext.as_slice(), b"{\"k\":1}");
        // And a field that is an empty string is read as one.
        let empty = good.replacen("\"1.0\"", "\"\"", 1);
        assert!(envelope_err(&serde_json::from_str(&empty).unwrap()).contains("version"));
    }

    #[test]
    fn the_plain_path_reads_only_what_the_strict_reader_reads_the_same() {
        // Every byte of an envelope (spaced, with processed_at) replaced by each of a few
        // bytes: whenever the plain path takes the body, the strict reader must read it too,
        // to the same parts.
        let good = serde_json::to_string(&sealed(b"{\"k\":1}"))
            .unwrap()
            .replacen('{', "{ \"processed_at\": 12.5 ,", 1);
        let kp = keypair();
        let mut plain_taken = 0;
        for at in 0..good.len() {
            for byte in [
                b' ', b'"', b'\\', b',', b'}', b'A', b'=', b'0', b'\n', 0x01, 0x80, 0xc3, 0xff,
            ] {
                let mut body = good.clone().into_bytes();
                body[at] = byte;
                // Whole: the same outcome and the same error text with and without the path.
                match (open(&body, kp), open_strict(&body, kp)) {
                    (Ok(a), Ok(b)) => assert_eq!(a.plaintext.as_slice(), b.plaintext.as_slice()),
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                    (a, b) => panic!("{:?} / {:?} at {at}", a.err(), b.err()),
                }
                let Some(plain) = plain_parts(&body, kp) else {
                    continue;
                };
                plain_taken += 1;
                let text = std::str::from_utf8(&body).expect("what the plain path reads is UTF-8");
                let strict = strict_parts(text, kp).expect("the strict reader agrees");
                assert_eq!(plain.ciphertext.as_slice(), strict.ciphertext.as_slice());
                assert_eq!(
                    (&plain.nonce, &plain.tag, &plain.wrapped, &plain.algorithm),
                    (
                        &strict.nonce,
                        &strict.tag,
                        &strict.wrapped,
                        &strict.algorithm
                    )
                );
                assert_eq!(plain.processed_at, strict.processed_at);
            }
        }
        // The unedited body and its whitespace variants did take the plain path.
        assert!(plain_taken > good.len(), "{plain_taken}");
        assert!(plain_parts(good.as_bytes(), kp).is_some());
    }

    #[test]
    fn seal_into_fills_only_a_fresh_buffer_of_the_envelope_s_exact_size() {
        let server = keypair().public_key().unwrap();
        let plain = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let len = sealed_len(plain.len(), &server);
        let mut buf = LockedBuf::from_slice(plain).unwrap();
        // Too short, too long, or already written to: refused before anything is encrypted.
        for (size, prefix) in [(len - 1, 0), (len + 1, 0), (len, 1), (len + 1, 1)] {
            let mut memory = vec![std::mem::MaybeUninit::<u8>::uninit(); size];
            let mut out = Fill::new(&mut memory);
            out.put(&b"x"[..prefix]).unwrap();
            let err = seal_into(&mut buf, &server, &mut out).err();
            assert!(matches!(err, Some(CoreError::Memory(_))), "{size}/{prefix}");
            assert_eq!(out.filled(), prefix, "nothing written");
            assert_eq!(buf.as_slice(), plain, "the plaintext is kept");
        }
        let envelope = vec_filled_by(len, |out| seal_into(&mut buf, &server, out))
            .unwrap()
            .expect("the envelope fills its buffer");
        assert_eq!(
            open(&envelope, keypair()).unwrap().plaintext.as_slice(),
            plain
        );
    }

    #[test]
    fn oversized_body_is_refused_before_parsing() {
        let body = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(
            open(&body, keypair()),
            Err(CoreError::ResponseTooLarge(_))
        ));
        let mut big = LockedBuf::zeroed(MAX_PLAINTEXT_BYTES + 1).unwrap();
        let server = keypair().public_key().unwrap();
        assert!(matches!(
            seal(&mut big, &server),
            Err(CoreError::RequestTooLarge(_))
        ));
    }

    fn flip_b64(v: &mut Value, path: &[&str], index: usize) {
        let mut node = &mut *v;
        for p in path {
            node = &mut node[*p];
        }
        let mut bytes = B64.decode(node.as_str().unwrap()).unwrap();
        let i = index.min(bytes.len() - 1);
        bytes[i] ^= 0x01;
        *node = B64.encode(bytes).into();
    }

    #[test]
    fn every_tamper_is_the_same_opaque_error() {
        let good = sealed(b"{\"secret\":\"value\"}");
        let targets: [&[&str]; 4] = [
            &["encrypted_payload", "ciphertext"],
            &["encrypted_payload", "tag"],
            &["encrypted_payload", "nonce"],
            &["encrypted_aes_key"],
        ];
        for path in targets {
            for index in [0, 7, 1000] {
                let mut v = good.clone();
                flip_b64(&mut v, path, index);
                let err = open_value(&v).err().expect("tampering must fail");
                assert!(matches!(err, CoreError::Crypto), "{path:?}: {err:?}");
                assert_eq!(err.to_string(), crate::error::CRYPTO_FAILURE_MESSAGE);
            }
        }
        let other = ClientKeyPair::generate(2048).unwrap();
        let body = serde_json::to_vec(&good).unwrap();
        assert!(matches!(open(&body, &other), Err(CoreError::Crypto)));
    }

    #[test]
    fn wrapped_key_of_wrong_length_is_opaque() {
        // A correctly wrapped 16-byte key: right modulus size, wrong AES key size.
        let server = keypair().public_key().unwrap();
        let mut v = sealed(b"{}");
        let mut wrapped = vec![0u8; server.modulus_bytes()];
        let n = server.encrypt_oaep(&[7u8; 16], &mut wrapped).unwrap();
        v["encrypted_aes_key"] = B64.encode(&wrapped[..n]).into();
        assert!(matches!(open_value(&v), Err(CoreError::Crypto)));
    }
}
