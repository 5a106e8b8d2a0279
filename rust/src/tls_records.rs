//! TLS 1.3 application records after rustls's handshake (RFC 8446 section 5), opened straight
//! into the caller's buffer and sealed straight from the caller's bytes.
//!
//! rustls's buffered connection copies every record three times on the way in (the socket's
//! bytes into its deframer, the decrypted record into a `Vec`, that into the caller's buffer)
//! and twice on the way out. Once the handshake is done, `tls::TlsSession` takes the traffic
//! keys from rustls and hands the records to this layer, which decrypts each one from the bytes
//! the socket gave straight into the response body (`open_separate_gather`) and encrypts each
//! one from the request's bytes straight into the TLS output (`seal_out_of_place_scatter`): a
//! 3.05 MB answer is received in ~0.37 ms against ~0.87 ms (`benches/PERFORMANCE.md`).
//!
//! What the layer accepts is RFC 8446's record protocol after the handshake, checked in full:
//! outer type application_data only, at most 2^14 + 256 bytes of ciphertext, the nonce from the
//! IV and the record's sequence number, the header as additional data, the inner content type
//! as the last non-zero byte, at most 2^14 bytes of content. Inside: application data, alerts
//! (close_notify ends the stream, a warning user_canceled is ignored, anything else ends the
//! session), and handshake messages (a NewSessionTicket is dropped; a KeyUpdate cannot be
//! followed without rustls's traffic secrets and ends the session, `RecordError::key_update`).
//! A record that fails authentication leaves nothing of itself in the caller's buffer.
//!
//! The keys live in aws-lc's allocations (the locked heap, `lc_heap`); the plaintext passes
//! through the layer's own buffers only for a record that does not fit the caller's buffer.

#![forbid(unsafe_code)]

use aws_lc_rs::aead::{
    Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305,
    NONCE_LEN,
};
use rustls::{AlertDescription, ConnectionTrafficSecrets, ExtractedSecrets};
use zeroize::Zeroize;

/// A record's header: type, legacy version, length.
pub const HEADER: usize = 5;
/// The AEAD tag of every TLS 1.3 suite.
pub const TAG: usize = 16;
/// Most content a record may carry (2^14).
pub const MAX_CONTENT: usize = 1 << 14;
/// Most ciphertext a record may carry (2^14 + 256).
pub const MAX_CIPHERTEXT: usize = MAX_CONTENT + 256;

/// Content types (RFC 8446 section 5.1).
pub const ALERT: u8 = 21;
/// A handshake message.
pub const HANDSHAKE: u8 = 22;
/// Application data.
pub const APPLICATION_DATA: u8 = 23;

/// Handshake message types that may follow the handshake.
const NEW_SESSION_TICKET: u8 = 4;
const KEY_UPDATE: u8 = 24;
/// Longest post-handshake message kept while its records arrive: a ticket's nonce, ticket and
/// extensions are each at most 2^16 bytes (with their length prefixes and lifetimes, 196,623).
const MAX_HANDSHAKE_MESSAGE: usize = 4 + 4 + 4 + 256 + 2 * ((1 << 16) + 1);

/// A record that fails authentication, in rustls's words (`rustls::Error::DecryptError`).
const DECRYPT_ERROR: &str = "cannot decrypt peer's message";

/// Alert descriptions (RFC 8446 section 6).
const CLOSE_NOTIFY: u8 = 0;
const USER_CANCELED: u8 = 90;
const WARNING: u8 = 1;

/// Why the record layer stopped: the text for the caller, and the alert to send the peer (none
/// when the peer's own alert ended the session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// One line, without any record content.
    pub message: String,
    /// The fatal alert owed to the peer.
    pub alert: Option<AlertDescription>,
    /// The peer updated its keys: a session of ours cannot follow (see the module's notes).
    pub key_update: bool,
}

impl RecordError {
    fn fatal(alert: AlertDescription, message: &str) -> Self {
        RecordError {
            message: message.to_owned(),
            alert: Some(alert),
            key_update: false,
        }
    }
}

/// Where opened content goes: the caller's buffer from `written` on, then `overflow`.
pub struct Plaintext<'a> {
    /// The caller's buffer.
    pub out: &'a mut [u8],
    /// Content bytes written into `out` so far.
    pub written: usize,
    /// Content that did not fit, appended in order.
    pub overflow: &'a mut Vec<u8>,
}

impl Plaintext<'_> {
    fn room(&self) -> usize {
        self.out.len() - self.written
    }

    fn put(&mut self, content: &[u8]) {
        let n = content.len().min(self.room());
        crate::page_offset_copy::copy(&content[..n], &mut self.out[self.written..]);
        self.written += n;
        self.overflow.extend_from_slice(&content[n..]);
    }
}

/// One direction's key, IV and next sequence number.
struct Direction {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
    /// Records this key may protect (the suite's confidentiality limit on the sending side).
    limit: u64,
}

impl Direction {
    fn new(
        algorithm: &'static Algorithm,
        key: &[u8],
        iv: &[u8],
        seq: u64,
        limit: u64,
    ) -> Result<Self, RecordError> {
        let unusable = || RecordError::fatal(AlertDescription::InternalError, "unusable TLS key");
        let key = UnboundKey::new(algorithm, key).map_err(|_| unusable())?;
        let iv = <[u8; NONCE_LEN]>::try_from(iv).map_err(|_| unusable())?;
        Ok(Direction {
            key: LessSafeKey::new(key),
            iv,
            seq,
            limit,
        })
    }

    /// The next record's nonce: the IV XOR the sequence number (RFC 8446 section 5.3).
    fn next_nonce(&mut self) -> Result<Nonce, RecordError> {
        if self.seq >= self.limit {
            return Err(RecordError::fatal(
                AlertDescription::InternalError,
                "the TLS connection reached its record limit; reconnect",
            ));
        }
        let mut nonce = self.iv;
        for (byte, seq) in nonce[NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *byte ^= seq;
        }
        self.seq += 1;
        Ok(Nonce::assume_unique_for_key(nonce))
    }
}

impl Drop for Direction {
    fn drop(&mut self) {
        self.iv.zeroize();
    }
}

/// The keys of one direction: its AEAD, key, IV and first sequence number.
pub struct Keys<'a> {
    /// The suite's AEAD.
    pub algorithm: &'static Algorithm,
    /// The traffic key.
    pub key: &'a [u8],
    /// The traffic IV.
    pub iv: &'a [u8],
    /// The next record's sequence number.
    pub seq: u64,
}

/// A connection's records after the handshake.
pub struct RecordLayer {
    seal: Direction,
    open: Direction,
    /// A record split across `open` calls (header first), never more than one record.
    partial: Vec<u8>,
    /// A record that did not fit the caller's buffer, decrypted here.
    scratch: Vec<u8>,
    /// A post-handshake message split across records.
    handshake: Vec<u8>,
}

impl std::fmt::Debug for RecordLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordLayer")
    }
}

impl RecordLayer {
    /// The layer for the keys rustls hands over; `send_limit` is the suite's confidentiality
    /// limit (records one key may seal).
    pub fn from_secrets(secrets: ExtractedSecrets, send_limit: u64) -> Result<Self, RecordError> {
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        let seal = direction(tx, tx_seq, send_limit)?;
        let open = direction(rx, rx_seq, u64::MAX)?;
        Ok(Self::with(seal, open))
    }

    /// The layer for explicit keys (tests, and peers of tests).
    pub fn from_keys(
        send: Keys<'_>,
        receive: Keys<'_>,
        send_limit: u64,
    ) -> Result<Self, RecordError> {
        let seal = Direction::new(send.algorithm, send.key, send.iv, send.seq, send_limit)?;
        let open = Direction::new(
            receive.algorithm,
            receive.key,
            receive.iv,
            receive.seq,
            u64::MAX,
        )?;
        Ok(Self::with(seal, open))
    }

    fn with(seal: Direction, open: Direction) -> Self {
        RecordLayer {
            seal,
            open,
            partial: Vec::new(),
            scratch: Vec::new(),
            handshake: Vec::new(),
        }
    }

    /// The TLS bytes `seal_application_data` appends for `len` bytes of content.
    pub fn sealed_len(len: usize) -> usize {
        len + len.div_ceil(MAX_CONTENT) * (HEADER + 1 + TAG)
    }

    /// Append `data` to `out` as application-data records of at most 2^14 bytes each.
    pub fn seal_application_data(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        out.reserve(Self::sealed_len(data.len()));
        for fragment in data.chunks(MAX_CONTENT) {
            self.seal_record(APPLICATION_DATA, fragment, out)?;
        }
        Ok(())
    }

    /// Append an alert record (`fatal` or a warning, as close_notify is sent).
    pub fn seal_alert(
        &mut self,
        description: AlertDescription,
        fatal: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        let level = if fatal { 2 } else { WARNING };
        self.seal_record(ALERT, &[level, u8::from(description)], out)
    }

    /// One record of `kind` carrying `content` (at most 2^14 bytes), appended to `out`.
    pub fn seal_record(
        &mut self,
        kind: u8,
        content: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        let nonce = self.seal.next_nonce()?;
        let length = content.len() + 1 + TAG;
        let header = record_header(length);
        let start = out.len();
        out.extend_from_slice(&header);
        out.resize(start + HEADER + length, 0);
        let (ciphertext, type_and_tag) = out[start + HEADER..].split_at_mut(content.len());
        let sealed = self.seal.key.seal_out_of_place_scatter(
            nonce,
            Aad::from(header),
            content,
            ciphertext,
            &[kind],
            type_and_tag,
        );
        if sealed.is_err() {
            out.truncate(start);
            return Err(RecordError::fatal(
                AlertDescription::InternalError,
                "a TLS record could not be sealed",
            ));
        }
        Ok(())
    }

    /// Open every complete record in `data` (after what an earlier call left of a split one),
    /// the content into `to`; a record cut short waits for the next call. Returns whether the
    /// peer's close_notify came (what follows it is discarded). On an error the records before
    /// the bad one have been delivered.
    pub fn open(&mut self, mut data: &[u8], to: &mut Plaintext<'_>) -> Result<bool, RecordError> {
        while !data.is_empty() {
            if !self.partial.is_empty() || !whole_record_at(data)? {
                let taken = self.take_partial(data)?;
                data = &data[taken..];
                if !self.partial_is_whole() {
                    continue;
                }
                let record = std::mem::take(&mut self.partial);
                let closed = self.open_record(&record, to);
                self.partial = record;
                self.partial.clear();
                if closed? {
                    return Ok(true);
                }
                continue;
            }
            let length = HEADER + body_length(data);
            let (record, rest) = data.split_at(length);
            data = rest;
            if self.open_record(record, to)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Move bytes of `data` into the split record (its header first, checked as soon as it is
    /// whole); the bytes taken.
    fn take_partial(&mut self, data: &[u8]) -> Result<usize, RecordError> {
        let mut taken = 0;
        if self.partial.len() < HEADER {
            taken = (HEADER - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..taken]);
            if self.partial.len() < HEADER {
                return Ok(taken);
            }
            check_header(&self.partial)?;
        }
        let wanted = HEADER + body_length(&self.partial) - self.partial.len();
        let more = wanted.min(data.len() - taken);
        self.partial.extend_from_slice(&data[taken..taken + more]);
        Ok(taken + more)
    }

    fn partial_is_whole(&self) -> bool {
        self.partial.len() >= HEADER && self.partial.len() == HEADER + body_length(&self.partial)
    }

    /// Decrypt one whole record (header checked) and act on its content; `true` at
    /// close_notify.
    fn open_record(&mut self, record: &[u8], to: &mut Plaintext<'_>) -> Result<bool, RecordError> {
        // `check_header` saw to it that the record holds a header, a tag and a type.
        let (Some(header), Some(body)) = (record.first_chunk::<HEADER>(), record.get(HEADER..))
        else {
            return Err(RecordError::fatal(
                AlertDescription::BadRecordMac,
                DECRYPT_ERROR,
            ));
        };
        let Some((ciphertext, tag)) = body.split_at_checked(body.len().saturating_sub(TAG)) else {
            return Err(RecordError::fatal(
                AlertDescription::BadRecordMac,
                DECRYPT_ERROR,
            ));
        };
        let header = *header;
        let nonce = self.open.next_nonce()?;
        // rustls's own text for it, which the drivers map to OpenSSL's reason (`_core_tls`).
        let forged = || RecordError::fatal(AlertDescription::BadRecordMac, DECRYPT_ERROR);
        if !self.handshake.is_empty() || to.room() < ciphertext.len() {
            // Held here: a record that does not fit, or one a split message continues in.
            self.scratch.resize(ciphertext.len(), 0);
            let opened = self.open.key.open_separate_gather(
                nonce,
                Aad::from(header),
                ciphertext,
                tag,
                &mut self.scratch,
            );
            if opened.is_err() {
                self.scratch.zeroize();
                return Err(forged());
            }
            let inner = std::mem::take(&mut self.scratch);
            let result = self.act(&inner, to);
            self.scratch = inner;
            return result;
        }
        // Straight into the caller's buffer, where application data stays.
        let start = to.written;
        let region = &mut to.out[start..start + ciphertext.len()];
        let opened =
            self.open
                .key
                .open_separate_gather(nonce, Aad::from(header), ciphertext, tag, region);
        if opened.is_err() {
            region.zeroize(); // unauthenticated bytes never stay in the caller's buffer
            return Err(forged());
        }
        match inner_type(region) {
            Ok((APPLICATION_DATA, length)) => {
                region[length..].zeroize(); // the content type and padding: not content
                to.written += length;
                Ok(false)
            }
            Ok(_) => {
                // An alert or a handshake message: acted on apart, wiped from the buffer.
                let control = region.to_vec();
                region.zeroize();
                self.act(&control, to)
            }
            Err(error) => {
                region.zeroize();
                Err(error)
            }
        }
    }

    /// Act on a decrypted record's inner plaintext (content, type, padding) held apart from
    /// the caller's buffer.
    fn act(&mut self, inner: &[u8], to: &mut Plaintext<'_>) -> Result<bool, RecordError> {
        let (kind, length) = inner_type(inner)?;
        let content = &inner[..length];
        if !self.handshake.is_empty() && kind != HANDSHAKE {
            return Err(RecordError::fatal(
                AlertDescription::UnexpectedMessage,
                "a TLS handshake message was interrupted by another record",
            ));
        }
        match kind {
            APPLICATION_DATA => {
                to.put(content);
                Ok(false)
            }
            ALERT => alert(content),
            HANDSHAKE => {
                self.post_handshake(content)?;
                Ok(false)
            }
            _ => Err(unexpected_type()),
        }
    }

    /// Handshake messages after the handshake, possibly split across records.
    fn post_handshake(&mut self, content: &[u8]) -> Result<(), RecordError> {
        if content.is_empty() {
            return Err(RecordError::fatal(
                AlertDescription::UnexpectedMessage,
                "an empty TLS handshake record",
            ));
        }
        if self.handshake.len() + content.len() > MAX_HANDSHAKE_MESSAGE + MAX_CONTENT {
            return Err(RecordError::fatal(
                AlertDescription::DecodeError,
                "a TLS handshake message after the handshake is too long",
            ));
        }
        self.handshake.extend_from_slice(content);
        loop {
            let Some(&[kind, a, b, c]) = self.handshake.get(..4) else {
                return Ok(());
            };
            let length = u32::from_be_bytes([0, a, b, c]) as usize;
            if length > MAX_HANDSHAKE_MESSAGE {
                return Err(RecordError::fatal(
                    AlertDescription::DecodeError,
                    "a TLS handshake message after the handshake is too long",
                ));
            }
            if self.handshake.len() < 4 + length {
                return Ok(());
            }
            match kind {
                // Tickets for resuming later connections: rustls keeps those that come before
                // the layer takes over (with the first answer), these are dropped.
                NEW_SESSION_TICKET => {}
                KEY_UPDATE => {
                    return Err(RecordError {
                        message: "the server updated its TLS keys, which this connection cannot \
                                  follow; reconnect"
                            .to_owned(),
                        alert: Some(AlertDescription::InternalError),
                        key_update: true,
                    })
                }
                _ => {
                    return Err(RecordError::fatal(
                        AlertDescription::UnexpectedMessage,
                        "an unexpected TLS handshake message after the handshake",
                    ))
                }
            }
            self.handshake.drain(..4 + length);
        }
    }
}

fn direction(
    secrets: ConnectionTrafficSecrets,
    seq: u64,
    limit: u64,
) -> Result<Direction, RecordError> {
    let (algorithm, key, iv): (&'static Algorithm, _, _) = match &secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&AES_128_GCM, key, iv),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&AES_256_GCM, key, iv),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (&CHACHA20_POLY1305, key, iv),
        _ => {
            return Err(RecordError::fatal(
                AlertDescription::InternalError,
                "unsupported TLS cipher for the record layer",
            ))
        }
    };
    // `secrets` wipes its key as it drops (rustls's `AeadKey`).
    Direction::new(algorithm, key.as_ref(), iv.as_ref(), seq, limit)
}

fn record_header(length: usize) -> [u8; HEADER] {
    let [high, low] = u16::try_from(length).unwrap_or(u16::MAX).to_be_bytes();
    [APPLICATION_DATA, 3, 3, high, low]
}

fn body_length(header: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([header[3], header[4]]))
}

/// Refuse a header this layer never opens: another outer type (after the handshake every
/// record is application_data), a body that cannot hold a tag and a type, or one past 2^14 + 256.
fn check_header(header: &[u8]) -> Result<(), RecordError> {
    if header[0] != APPLICATION_DATA {
        return Err(unexpected_type());
    }
    let length = body_length(header);
    if length > MAX_CIPHERTEXT {
        return Err(RecordError::fatal(
            AlertDescription::RecordOverflow,
            "a TLS record is too long",
        ));
    }
    if length < TAG + 1 {
        return Err(RecordError::fatal(
            AlertDescription::BadRecordMac,
            DECRYPT_ERROR,
        ));
    }
    Ok(())
}

/// Whether `data` starts with a whole record (its header checked); `false` when it is cut.
fn whole_record_at(data: &[u8]) -> Result<bool, RecordError> {
    if data.len() < HEADER {
        return Ok(false);
    }
    check_header(data)?;
    Ok(data.len() >= HEADER + body_length(data))
}

/// The inner plaintext's content type (its last non-zero byte) and content length.
fn inner_type(inner: &[u8]) -> Result<(u8, usize), RecordError> {
    let Some(at) = inner.iter().rposition(|&byte| byte != 0) else {
        return Err(RecordError::fatal(
            AlertDescription::UnexpectedMessage,
            "a TLS record without a content type",
        ));
    };
    if at > MAX_CONTENT {
        return Err(RecordError::fatal(
            AlertDescription::RecordOverflow,
            "a TLS record's content is too long",
        ));
    }
    Ok((inner[at], at))
}

fn unexpected_type() -> RecordError {
    RecordError::fatal(
        AlertDescription::UnexpectedMessage,
        "an unexpected TLS record type after the handshake",
    )
}

/// An alert's content: close_notify ends the stream (`true`), a warning user_canceled is
/// ignored, anything else ends the session.
fn alert(content: &[u8]) -> Result<bool, RecordError> {
    let &[level, description] = content else {
        return Err(RecordError::fatal(
            AlertDescription::DecodeError,
            "a malformed TLS alert",
        ));
    };
    match (level, description) {
        (_, CLOSE_NOTIFY) => Ok(true),
        (WARNING, USER_CANCELED) => Ok(false),
        (WARNING, _) => Err(RecordError::fatal(
            AlertDescription::DecodeError,
            "the peer sent a TLS warning alert that TLS 1.3 forbids",
        )),
        (_, description) => Err(RecordError {
            message: format!(
                "received fatal alert: {:?}",
                AlertDescription::from(description)
            ),
            alert: None,
            key_update: false,
        }),
    }
}

#[cfg(test)]
#[path = "tls_records_tests.rs"]
mod tests;
