//! The TLS record layer of a client connection: a sans-I/O rustls session over aws-lc-rs.
//!
//! The caller (Python) owns the socket: it hands in the bytes it read (`receive`), takes the
//! bytes to write (`take_tls`), and moves application data in (`send`) and out (`read_into`).
//! Here the records from the network are parsed and decrypted in Rust, and the traffic keys
//! live in aws-lc's allocations, which go to the locked heap (`lc_heap`). rustls runs the
//! handshake and a session's first answer; after that a TLS 1.3 session's records go to the
//! core's own layer (`tls_records`), which decrypts them straight into the caller's buffer
//! (`TlsSession::take_over`).
//!
//! Errors are typed: a refused server certificate is a `TlsFailure::Certificate` with a short
//! stable reason code, anything else `TlsFailure::Protocol`. Their texts are rustls's own
//! `Display` (names, alert descriptions, the expected and presented host names), which never
//! contain key material or application data, made one bounded line (`one_line`): the
//! presented names are the server's to choose; `tls_records`' are fixed texts and alert
//! names. A session that failed stays failed.

#![forbid(unsafe_code)]

use std::fmt;
use std::io;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore};

use crate::fill::{vec_filled_by, Fill};
use crate::page_offset_copy::{self, Source};
use crate::tls_parity;
use crate::tls_records::{self, Plaintext, RecordError, RecordLayer};

/// The received-plaintext buffer rustls keeps (16 KiB) refuses more records once it holds more
/// than this; past it `receive` moves the plaintext into the session's own buffer.
const RUSTLS_PLAINTEXT_LIMIT: usize = 16 * 1024;

/// `send` hands rustls this much at a time.
const SEND_SLICE: usize = 64 * 1024;

/// A `send` up to this size leaves its records in rustls (`take_tls` copies them out once, as
/// the drivers' 256 KiB writes); a larger one stages each slice's, so that a megabyte of record
/// buffers is never allocated at once.
const UNSTAGED_SEND: usize = 256 * 1024;

/// Largest staging buffer kept between calls: the records of a 256 KiB write.
const STAGED_KEPT: usize = 256 * 1024 + 16 * (tls_records::HEADER + 1 + tls_records::TAG);

/// Plaintext copies into callers' buffers that went around the slow page offsets
/// (`page_offset_copy`) since the module was loaded (tests see the route taken).
#[cfg(feature = "testing")]
pub static PLAINTEXT_BOUNCES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Tests: while this is set, no session hands its records to the core's layer.
#[cfg(feature = "testing")]
pub static KEEP_RUSTLS_RECORDS: AtomicBool = AtomicBool::new(false);

/// Why a trust store or a server name was refused (a `ValueError` in Python).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSetupError(pub String);

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsSetupError {}

/// A failed session: the certificate was refused, or anything else went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server's certificate was refused: a stable reason code and rustls's message.
    Certificate {
        /// A short stable code ("UnknownIssuer", "NotValidForName", "Expired"...).
        reason: &'static str,
        /// rustls's description of the refusal.
        message: String,
    },
    /// A handshake, protocol, alert or record failure, or a misuse of the session.
    Protocol(String),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::Certificate { message, .. } | TlsFailure::Protocol(message) => {
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for TlsFailure {}

impl From<rustls::Error> for TlsFailure {
    fn from(error: rustls::Error) -> Self {
        let message = one_line(&error.to_string());
        match &error {
            rustls::Error::InvalidCertificate(cert) => TlsFailure::Certificate {
                reason: certificate_reason(cert),
                message,
            },
            _ => TlsFailure::Protocol(message),
        }
    }
}

/// Longest failure text handed to Python.
const MAX_FAILURE_TEXT: usize = 1024;

/// A failure's text as one bounded line: rustls quotes the names the server's certificate
/// presents, which the server chose (a line break would forge a line in the client's log; two
/// thousand names make a 50 KB message). Anything but printable ASCII is escaped (`\n`,
/// `\u{202e}`), and the text is cut at `MAX_FAILURE_TEXT` bytes.
pub fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len().min(MAX_FAILURE_TEXT));
    for c in text.chars() {
        let start = line.len();
        if c == ' ' || c.is_ascii_graphic() {
            line.push(c);
        } else {
            line.extend(c.escape_default());
        }
        if line.len() > MAX_FAILURE_TEXT - 3 {
            line.truncate(start);
            line.push_str("...");
            break;
        }
    }
    line
}

/// The stable code of a certificate refusal (the `*Context` variants carry the same meaning
/// with more detail in the message).
pub fn certificate_reason(error: &CertificateError) -> &'static str {
    use CertificateError as E;
    match error {
        E::BadEncoding => "BadEncoding",
        E::Expired | E::ExpiredContext { .. } => "Expired",
        E::NotValidYet | E::NotValidYetContext { .. } => "NotValidYet",
        E::Revoked => "Revoked",
        E::UnhandledCriticalExtension => "UnhandledCriticalExtension",
        E::UnknownIssuer => "UnknownIssuer",
        E::UnknownRevocationStatus => "UnknownRevocationStatus",
        E::ExpiredRevocationList | E::ExpiredRevocationListContext { .. } => {
            "ExpiredRevocationList"
        }
        E::BadSignature => "BadSignature",
        #[allow(deprecated)] // still what older verifiers report
        E::UnsupportedSignatureAlgorithm => "UnsupportedSignatureAlgorithm",
        E::UnsupportedSignatureAlgorithmContext { .. }
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "UnsupportedSignatureAlgorithm"
        }
        E::NotValidForName | E::NotValidForNameContext { .. } => "NotValidForName",
        E::InvalidPurpose | E::InvalidPurposeContext { .. } => "InvalidPurpose",
        E::InvalidOcspResponse => "InvalidOcspResponse",
        E::ApplicationVerificationFailure => "ApplicationVerificationFailure",
        _ => "Other",
    }
}

/// The trust anchors read from a PEM trust store.
#[derive(Debug)]
pub struct TrustAnchors {
    /// The anchors, for webpki's path building (`tls_parity::ParityVerifier`).
    pub store: RootCertStore,
    /// CERTIFICATE blocks that were not usable (bad base64, not a certificate rustls accepts).
    pub skipped: usize,
    /// The anchors' own constraints webpki does not apply (`tls_parity`).
    pub limits: Vec<tls_parity::AnchorLimit>,
}

/// Every PEM CERTIFICATE block in `pem` as a trust anchor, as OpenSSL's `load_verify_locations`
/// reads a CA file; other blocks are ignored, unusable certificates skipped and counted.
pub fn trust_anchors(pem: &[u8]) -> Result<TrustAnchors, TlsSetupError> {
    let mut store = RootCertStore::empty();
    let mut skipped = 0;
    let mut limits = Vec::new();
    // Each step consumes at least one line, so a malformed block ends the walk, never loops.
    for block in CertificateDer::pem_slice_iter(pem) {
        let Ok(der) = block else {
            skipped += 1;
            continue;
        };
        let limit = tls_parity::anchor_limit(&der);
        match store.add(der) {
            Ok(()) => limits.extend(limit),
            Err(_) => skipped += 1,
        }
    }
    if store.is_empty() {
        return Err(TlsSetupError(
            "no usable CA certificate in the trust store".to_owned(),
        ));
    }
    Ok(TrustAnchors {
        store,
        skipped,
        limits,
    })
}

/// A client's trust anchors and protocol settings, shared by its sessions (with the
/// session-resumption cache). Building one parses every anchor: do it once per trust store.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    config: Arc<ClientConfig>,
    root_count: usize,
    skipped: usize,
    /// TLS 1.3 sessions hand their records to the core's layer after the first answer
    /// (`tls_records`); cleared for good once a server of this config updated its keys, which
    /// that layer cannot follow, so that later sessions keep rustls's.
    own_records: Arc<AtomicBool>,
}

impl TlsConfig {
    /// rustls's safe defaults on aws-lc-rs (TLS 1.3 and 1.2, its cipher suites and key
    /// exchange groups, the post-quantum hybrid first), WebPki verification against the
    /// anchors in `roots_pem`, the given ALPN protocols, the in-memory resumption cache, no
    /// 0-RTT and no key log. Its TLS 1.3 traffic keys may be taken from rustls once a session's
    /// handshake is done (`TlsSession::take_over`).
    pub fn new(roots_pem: &[u8], alpn: Vec<Vec<u8>>) -> Result<Self, TlsSetupError> {
        let anchors = trust_anchors(roots_pem)?;
        let root_count = anchors.store.len();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = tls_parity::ParityVerifier::new(
            anchors.store,
            provider.signature_verification_algorithms,
            anchors.limits,
        );
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = alpn;
        config.enable_early_data = false;
        config.enable_secret_extraction = true;
        Ok(Self {
            config: Arc::new(config),
            root_count,
            skipped: anchors.skipped,
            own_records: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The trust anchors in use.
    pub fn root_count(&self) -> usize {
        self.root_count
    }

    /// CERTIFICATE blocks of the trust store that were skipped as unusable.
    pub fn skipped_count(&self) -> usize {
        self.skipped
    }
}

/// rustls wrote fewer TLS bytes than `tls_pending` announced (a bug, not the peer's doing).
fn output_shorter() -> TlsFailure {
    TlsFailure::Protocol("internal error: the TLS output was shorter than announced".to_owned())
}

/// The server name to verify: a DNS name or an IP literal.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsSetupError> {
    ServerName::try_from(name.to_owned()).map_err(|_| {
        TlsSetupError("server_name is neither a valid DNS name nor an IP address".to_owned())
    })
}

/// One client connection's TLS state. Not thread-safe by itself: the binding lends it to one
/// call at a time.
#[derive(Debug)]
pub struct TlsSession {
    link: Link,
    /// Where rustls's input stands in the record stream: the core's layer takes over between
    /// two records only.
    framing: Framing,
    /// rustls has delivered application data: the server's session tickets, sent before its
    /// first answer, have reached rustls's resumption cache.
    answered: bool,
    own_records: Arc<AtomicBool>,
    /// Plaintext taken out of rustls's bounded buffer: `overflow[overflow_read..]` is waiting,
    /// and is older than anything still inside rustls.
    overflow: Vec<u8>,
    overflow_read: usize,
    /// Plaintext waiting inside rustls, and TLS bytes it has queued (as of the last call).
    rustls_plaintext: usize,
    rustls_tls: usize,
    /// TLS bytes drained from rustls after a failure (its alert), sent before anything newer.
    staged_tls: Vec<u8>,
    peer_closed: bool,
    closed: bool,
    failure: Option<TlsFailure>,
}

impl TlsSession {
    /// A session to `server_name`; its ClientHello is ready in the TLS output at once.
    pub fn new(config: &TlsConfig, server_name: ServerName<'static>) -> Result<Self, TlsFailure> {
        let _inside = crate::lc_heap::enter();
        let mut conn = ClientConnection::new(Arc::clone(&config.config), server_name)?;
        // The caller drains the output after every call: no cap on what a `send` may queue.
        conn.set_buffer_limit(None);
        let mut session = Self {
            link: Link::Rustls(Box::new(conn)),
            framing: Framing::default(),
            answered: false,
            own_records: Arc::clone(&config.own_records),
            overflow: Vec::new(),
            overflow_read: 0,
            rustls_plaintext: 0,
            rustls_tls: 0,
            staged_tls: Vec::new(),
            peer_closed: false,
            closed: false,
            failure: None,
        };
        session.refresh()?;
        Ok(session)
    }

    /// The failure that ended the session, if any.
    pub fn failure(&self) -> Option<&TlsFailure> {
        self.failure.as_ref()
    }

    /// End the session with `message` (a panic inside it: its state cannot be trusted, so
    /// nothing it decrypted is handed over).
    pub fn poison(&mut self, message: &str) -> TlsFailure {
        let failure = TlsFailure::Protocol(message.to_owned());
        self.failure = Some(failure.clone());
        self.overflow.clear();
        self.overflow_read = 0;
        self.rustls_plaintext = 0;
        failure
    }

    fn check(&self) -> Result<(), TlsFailure> {
        match &self.failure {
            Some(failure) => Err(failure.clone()),
            None => Ok(()),
        }
    }

    /// Record `failure` as final, keep rustls's alert for `take_tls` and the plaintext of the
    /// records authenticated before the failure for `read_into`, and return it.
    fn fail(&mut self, failure: TlsFailure) -> TlsFailure {
        self.failure = Some(failure.clone());
        // The failing call may have decrypted good records first (not yet counted): all of
        // rustls's plaintext moves out, so that nothing is read from rustls after its failure.
        self.move_plaintext_out();
        if let Link::Rustls(conn) = &mut self.link {
            let mut alert = Vec::new();
            while conn.wants_write() {
                match conn.write_tls(&mut alert) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            self.staged_tls.extend_from_slice(&alert);
        }
        self.rustls_tls = 0;
        failure
    }

    /// `fail` for the core's record layer: its alert is queued for `take_tls`, and a server
    /// that updated its keys keeps later sessions of the config on rustls's layer.
    fn fail_records(&mut self, error: RecordError) -> TlsFailure {
        if error.key_update {
            self.own_records.store(false, Ordering::Relaxed);
        }
        if let (Some(alert), Link::Records(records)) = (error.alert, &mut self.link) {
            // Best effort: a layer past its record limit cannot seal it, and the session ends.
            let _ = records.layer.seal_alert(alert, true, &mut self.staged_tls);
        }
        self.fail(TlsFailure::Protocol(error.message))
    }

    /// Process what rustls holds and note what is waiting on each side.
    fn refresh(&mut self) -> Result<(), TlsFailure> {
        let Link::Rustls(conn) = &mut self.link else {
            return Ok(());
        };
        match conn.process_new_packets() {
            Ok(state) => {
                self.rustls_plaintext = state.plaintext_bytes_to_read();
                self.rustls_tls = state.tls_bytes_to_write();
                self.peer_closed |= state.peer_has_closed();
                self.answered |= self.rustls_plaintext > 0;
                Ok(())
            }
            Err(error) => Err(self.fail(error.into())),
        }
    }

    /// Take TLS bytes read from the socket (all of them), processing every complete record;
    /// returns the plaintext bytes now waiting. A truncated record waits for the rest.
    pub fn receive(&mut self, data: &[u8]) -> Result<usize, TlsFailure> {
        let mut written = 0;
        self.receive_into(data, &mut [], &mut written)?;
        Ok(self.plaintext_pending())
    }

    /// `receive`, with the plaintext moved into `out` as the records are decrypted (what was
    /// waiting first): a body lands in its buffer without passing through the session's own.
    /// `written` counts the bytes written into `out`, also when this fails: the records
    /// before the bad one are authentic. What does not fit waits for `read_into`.
    pub fn receive_into(
        &mut self,
        mut data: &[u8],
        out: &mut [u8],
        written: &mut usize,
    ) -> Result<(), TlsFailure> {
        *written = 0;
        self.check()?;
        let _inside = crate::lc_heap::enter();
        *written = self.take_plaintext(out);
        while !data.is_empty() && !self.peer_closed {
            if self.may_take_over() {
                *written += self.take_plaintext(&mut out[*written..]);
                self.take_over()?;
            }
            self.drop_read_overflow();
            if let Link::Records(records) = &mut self.link {
                // Anything still waiting in `overflow` filled `out` first: the new content
                // lands after it either way.
                let mut to = Plaintext {
                    out: &mut out[*written..],
                    written: 0,
                    overflow: &mut self.overflow,
                };
                let opened = records.layer.open(data, &mut to);
                *written += to.written;
                match opened {
                    Ok(closed) => self.peer_closed |= closed,
                    Err(error) => return Err(self.fail_records(error)),
                }
                break;
            }
            if self.rustls_plaintext > RUSTLS_PLAINTEXT_LIMIT {
                *written += self.take_plaintext(&mut out[*written..]);
                if self.rustls_plaintext > RUSTLS_PLAINTEXT_LIMIT {
                    self.move_plaintext_out();
                }
            }
            // Never past the current record's end, so that rustls holds no part of the next.
            let feed = self.framing.feedable(data);
            let Link::Rustls(conn) = &mut self.link else {
                return Err(self.fail(switching()));
            };
            match conn.read_tls(&mut Source(&data[..feed])) {
                // After close_notify rustls reads nothing more: the rest is discarded.
                Ok(0) => break,
                Ok(n) => {
                    self.framing.advance(&data[..n]);
                    data = &data[n..];
                    self.refresh()?;
                }
                Err(error) => {
                    return Err(self.fail(TlsFailure::Protocol(one_line(&error.to_string()))))
                }
            }
        }
        *written += self.take_plaintext(&mut out[*written..]);
        Ok(())
    }

    /// Whether the core's record layer can take over now: a TLS 1.3 session past its handshake
    /// and its first answer (the tickets before it are rustls's), between two records, with
    /// nothing of rustls's waiting to be sent.
    fn may_take_over(&self) -> bool {
        let Link::Rustls(conn) = &self.link else {
            return false;
        };
        #[cfg(feature = "testing")]
        if KEEP_RUSTLS_RECORDS.load(Ordering::Relaxed) {
            return false;
        }
        self.answered
            && self.framing.at_boundary()
            && self.failure.is_none()
            && !self.closed
            && !self.peer_closed
            && self.rustls_tls == 0
            && !conn.is_handshaking()
            && !conn.wants_write()
            && conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
            && self.own_records.load(Ordering::Relaxed)
    }

    /// Take the traffic keys from rustls and hand the records to the core's layer; what rustls
    /// decrypted and the caller has not taken moves to `overflow` first.
    fn take_over(&mut self) -> Result<(), TlsFailure> {
        self.move_plaintext_out();
        let Link::Rustls(conn) = std::mem::replace(&mut self.link, Link::Switching) else {
            return Ok(());
        };
        let negotiated = Negotiated::of(&conn);
        let limit = conn
            .negotiated_cipher_suite()
            .and_then(|suite| suite.tls13())
            .map(|suite| suite.common.confidentiality_limit);
        // rustls's kernel API (which also follows key updates) serves only its unbuffered
        // connection; the buffered one hands over the keys and sequence numbers this way.
        #[allow(deprecated)]
        let secrets = (*conn).dangerous_extract_secrets();
        let (Ok(secrets), Some(limit)) = (secrets, limit) else {
            return Err(self.fail(TlsFailure::Protocol(
                "internal error: the TLS keys could not be taken from rustls".to_owned(),
            )));
        };
        match RecordLayer::from_secrets(secrets, limit) {
            Ok(layer) => {
                self.link = Link::Records(Box::new(Records { layer, negotiated }));
                self.rustls_plaintext = 0;
                self.rustls_tls = 0;
                #[cfg(feature = "testing")]
                SESSIONS_TAKEN_OVER.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => Err(self.fail(TlsFailure::Protocol(error.message))),
        }
    }

    /// Move all of rustls's waiting plaintext to `overflow` (so that it reads more records).
    fn move_plaintext_out(&mut self) {
        self.drop_read_overflow();
        let Link::Rustls(conn) = &mut self.link else {
            return;
        };
        // Chunk by chunk (no `read_to_end`: it ends on WouldBlock, an error, after moving
        // everything, and probes with small reads first).
        self.overflow.reserve(self.rustls_plaintext);
        let before = self.overflow.len();
        let mut reader = conn.reader();
        while let Ok(chunk) = io::BufRead::fill_buf(&mut reader) {
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            self.overflow.extend_from_slice(chunk);
            io::BufRead::consume(&mut reader, n);
        }
        let moved = self.overflow.len() - before;
        self.rustls_plaintext = self.rustls_plaintext.saturating_sub(moved);
        if self.failure.is_some() {
            self.rustls_plaintext = 0; // rustls is empty now, whatever the last count said
        }
    }

    /// Empty `overflow` once all of it was read, so that new plaintext starts it anew.
    fn drop_read_overflow(&mut self) {
        if self.overflow_read == self.overflow.len() {
            self.overflow.clear();
            self.overflow_read = 0;
        }
    }

    /// Plaintext bytes waiting for `read_into`.
    pub fn plaintext_pending(&self) -> usize {
        (self.overflow.len() - self.overflow_read) + self.rustls_plaintext
    }

    /// Move waiting plaintext into `out`; returns how many bytes were written. After a
    /// failure, what was authenticated before it is still handed over; then the failure.
    pub fn read_into(&mut self, out: &mut [u8]) -> Result<usize, TlsFailure> {
        if self.plaintext_pending() == 0 {
            self.check()?;
        }
        Ok(self.take_plaintext(out))
    }

    /// Move waiting plaintext, oldest first, into `out`; the bytes written.
    fn take_plaintext(&mut self, out: &mut [u8]) -> usize {
        let mut written = 0;
        let waiting = &self.overflow[self.overflow_read..];
        if !waiting.is_empty() {
            let n = waiting.len().min(out.len());
            page_offset_copy::copy(&waiting[..n], &mut out[..n]);
            self.overflow_read += n;
            written = n;
        }
        let Link::Rustls(conn) = &mut self.link else {
            return written;
        };
        // Chunk by chunk through `BufRead`, so that the copy is ours (`page_offset_copy`).
        let mut reader = conn.reader();
        while written < out.len() && self.rustls_plaintext > 0 {
            let Ok(chunk) = io::BufRead::fill_buf(&mut reader) else {
                break;
            };
            let n = chunk.len().min(out.len() - written);
            if n == 0 {
                break;
            }
            let _route = page_offset_copy::copy(&chunk[..n], &mut out[written..written + n]);
            #[cfg(feature = "testing")]
            if _route == page_offset_copy::Route::Bounced {
                PLAINTEXT_BOUNCES.fetch_add(1, Ordering::Relaxed);
            }
            io::BufRead::consume(&mut reader, n);
            written += n;
            self.rustls_plaintext = self.rustls_plaintext.saturating_sub(n);
        }
        written
    }

    /// Encrypt application data into the TLS output. Refused before the handshake ends and
    /// after `close`.
    pub fn send(&mut self, data: &[u8]) -> Result<(), TlsFailure> {
        self.check()?;
        if self.handshaking() {
            return Err(TlsFailure::Protocol(
                "cannot send application data before the TLS handshake is complete".to_owned(),
            ));
        }
        if self.closed {
            return Err(TlsFailure::Protocol(
                "cannot send application data after close()".to_owned(),
            ));
        }
        let _inside = crate::lc_heap::enter();
        let conn = match &mut self.link {
            Link::Rustls(conn) => conn,
            Link::Records(records) => {
                return match records
                    .layer
                    .seal_application_data(data, &mut self.staged_tls)
                {
                    Ok(()) => Ok(()),
                    Err(error) => Err(self.fail_records(error)),
                };
            }
            Link::Switching => return Err(self.fail(switching())),
        };
        for slice in data.chunks(SEND_SLICE) {
            let mut writer = conn.writer();
            let mut rest = slice;
            while !rest.is_empty() {
                match io::Write::write(&mut writer, rest) {
                    Ok(0) => {
                        return Err(self.fail(TlsFailure::Protocol(
                            "the TLS session refused application data".to_owned(),
                        )))
                    }
                    Ok(n) => rest = &rest[n..],
                    Err(error) => {
                        return Err(self.fail(TlsFailure::Protocol(one_line(&error.to_string()))))
                    }
                }
            }
            if data.len() > UNSTAGED_SEND {
                stage_output(conn, &mut self.staged_tls);
                self.rustls_tls = 0;
            }
        }
        self.refresh()
    }

    /// TLS bytes waiting to be written to the socket.
    pub fn tls_pending(&self) -> usize {
        self.staged_tls.len() + self.rustls_tls
    }

    /// Write all waiting TLS bytes into `out`, a fresh writer of exactly `tls_pending()` bytes
    /// (the caller's final buffer, never zeroed first).
    pub fn take_tls_into(&mut self, out: &mut Fill<'_>) -> Result<(), TlsFailure> {
        if out.filled() != 0 || out.size() != self.tls_pending() {
            return Err(TlsFailure::Protocol(
                "internal error: the TLS output changed size".to_owned(),
            ));
        }
        out.put(&self.staged_tls).ok_or_else(output_shorter)?;
        self.staged_tls.clear();
        if self.staged_tls.capacity() > STAGED_KEPT {
            self.staged_tls = Vec::new();
        }
        while !out.is_full() {
            let Link::Rustls(conn) = &mut self.link else {
                return Err(output_shorter());
            };
            match conn.write_tls(out) {
                Ok(0) | Err(_) => return Err(output_shorter()),
                Ok(_) => {}
            }
        }
        self.rustls_tls = 0;
        Ok(())
    }

    /// All waiting TLS bytes, as a vector (tests and callers without a preallocated buffer).
    pub fn take_tls(&mut self) -> Result<Vec<u8>, TlsFailure> {
        vec_filled_by(self.tls_pending(), |out| self.take_tls_into(out))?.ok_or_else(output_shorter)
    }

    /// Queue close_notify (once; later calls do nothing).
    pub fn close(&mut self) -> Result<(), TlsFailure> {
        if self.closed || self.failure.is_some() {
            return Ok(());
        }
        self.closed = true;
        let _inside = crate::lc_heap::enter();
        match &mut self.link {
            Link::Rustls(conn) => {
                conn.send_close_notify();
                self.refresh()
            }
            Link::Records(records) => {
                let notify = rustls::AlertDescription::CloseNotify;
                match records
                    .layer
                    .seal_alert(notify, false, &mut self.staged_tls)
                {
                    Ok(()) => Ok(()),
                    Err(error) => Err(self.fail_records(error)),
                }
            }
            Link::Switching => Ok(()),
        }
    }

    /// The handshake is still under way.
    pub fn handshaking(&self) -> bool {
        match &self.link {
            Link::Rustls(conn) => conn.is_handshaking(),
            Link::Records(_) | Link::Switching => false,
        }
    }

    /// The peer's close_notify was received.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Whose record layer carries the session's records: "rustls" (the handshake and the
    /// first answer, a TLS 1.2 session, a config whose server updated its keys) or "core"
    /// (`tls_records`).
    pub fn record_layer(&self) -> &'static str {
        match &self.link {
            Link::Records(_) => "core",
            Link::Rustls(_) | Link::Switching => "rustls",
        }
    }

    /// "TLSv1.3" or "TLSv1.2" once negotiated (the names of `ssl.SSLObject.version()`).
    pub fn protocol_version(&self) -> Option<&'static str> {
        match &self.link {
            Link::Rustls(conn) => version_name(conn),
            Link::Records(records) => records.negotiated.version,
            Link::Switching => None,
        }
    }

    /// The negotiated cipher suite's IANA name ("TLS13_AES_256_GCM_SHA384").
    pub fn cipher_suite(&self) -> Option<&'static str> {
        match &self.link {
            Link::Rustls(conn) => suite_name(conn),
            Link::Records(records) => records.negotiated.suite,
            Link::Switching => None,
        }
    }

    /// The secret bits of the negotiated suite's bulk cipher (as `ssl.SSLObject.cipher()[2]`).
    pub fn cipher_bits(&self) -> Option<u32> {
        let name = self.cipher_suite()?;
        Some(if name.contains("AES_128") { 128 } else { 256 })
    }

    /// The protocol the server chose by ALPN.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.link {
            Link::Rustls(conn) => conn.alpn_protocol(),
            Link::Records(records) => records.negotiated.alpn.as_deref(),
            Link::Switching => None,
        }
    }

    /// The server's leaf certificate, DER.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match &self.link {
            Link::Rustls(conn) => conn.peer_certificates()?.first().map(|c| c.as_ref()),
            Link::Records(records) => records.negotiated.peer_certificate.as_deref(),
            Link::Switching => None,
        }
    }
}

/// Sessions whose records the core's layer took over since the module was loaded (tests).
#[cfg(feature = "testing")]
pub static SESSIONS_TAKEN_OVER: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Move rustls's queued records into `staged`, so that its record buffers are reused slice
/// after slice instead of a megabyte of them being allocated at once.
fn stage_output(conn: &mut ClientConnection, staged: &mut Vec<u8>) {
    while conn.wants_write() {
        match conn.write_tls(staged) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// The session was left between rustls and the core's layer by a failed take-over.
fn switching() -> TlsFailure {
    TlsFailure::Protocol("internal error: the TLS session has no record layer".to_owned())
}

/// Who carries a session's records.
#[derive(Debug)]
enum Link {
    /// rustls: the handshake, and everything of a session the core's layer does not take.
    Rustls(Box<ClientConnection>),
    /// The core's layer, with what was negotiated (rustls's connection is gone).
    Records(Box<Records>),
    /// Only while the keys move over (and after that failed).
    Switching,
}

#[derive(Debug)]
struct Records {
    layer: RecordLayer,
    negotiated: Negotiated,
}

/// What the handshake settled, as the accessors report it.
#[derive(Debug)]
struct Negotiated {
    version: Option<&'static str>,
    suite: Option<&'static str>,
    alpn: Option<Vec<u8>>,
    peer_certificate: Option<Vec<u8>>,
}

impl Negotiated {
    fn of(conn: &ClientConnection) -> Self {
        Negotiated {
            version: version_name(conn),
            suite: suite_name(conn),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            peer_certificate: conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| leaf.as_ref().to_vec()),
        }
    }
}

fn version_name(conn: &ClientConnection) -> Option<&'static str> {
    match conn.protocol_version()? {
        rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
        rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
        _ => None,
    }
}

fn suite_name(conn: &ClientConnection) -> Option<&'static str> {
    conn.negotiated_cipher_suite()?.suite().as_str()
}

/// The record boundaries of the bytes fed to rustls (headers read as they pass).
#[derive(Debug, Default)]
struct Framing {
    header: [u8; tls_records::HEADER],
    /// Header bytes seen of the current record (all five once its body is under way).
    have: usize,
    /// Body bytes of the current record still to come.
    body_left: usize,
}

impl Framing {
    /// How many bytes at the start of `data` may go to rustls: none past the current record.
    fn feedable(&self, data: &[u8]) -> usize {
        let end = if self.have < tls_records::HEADER {
            let missing = tls_records::HEADER - self.have;
            match data.get(..missing) {
                Some(rest) => {
                    let mut header = self.header;
                    header[self.have..].copy_from_slice(rest);
                    missing + usize::from(u16::from_be_bytes([header[3], header[4]]))
                }
                None => data.len(),
            }
        } else {
            self.body_left
        };
        end.min(data.len())
    }

    /// Note that rustls took `bytes`.
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.have < tls_records::HEADER {
                let n = (tls_records::HEADER - self.have).min(bytes.len());
                self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have == tls_records::HEADER {
                    self.body_left =
                        usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                }
            } else {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
            }
            if self.have == tls_records::HEADER && self.body_left == 0 {
                self.have = 0;
            }
        }
    }

    /// Between two records.
    fn at_boundary(&self) -> bool {
        self.have == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_texts_are_one_bounded_line() {
        assert_eq!(one_line("plain text, kept"), "plain text, kept");
        assert_eq!(one_line("a\nb\r\u{202e}c"), "a\\nb\\r\\u{202e}c");
        let long = one_line(&"DnsName(\"n.example\"), ".repeat(500));
        assert!(long.len() <= MAX_FAILURE_TEXT && long.ends_with("..."));
        let escapes = one_line(&"\n".repeat(2000));
        assert!(escapes.len() <= MAX_FAILURE_TEXT && escapes.ends_with("\\n..."));
    }

    fn pem_block(label: &str, body: &str) -> String {
        format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
    }

    #[test]
    fn empty_or_garbage_store_is_refused() {
        for pem in [&b""[..], b"garbage", b"-----BEGIN CERTIFICATE-----\n!!!\n"] {
            let error = trust_anchors(pem).unwrap_err();
            assert_eq!(error.0, "no usable CA certificate in the trust store");
        }
    }

    #[test]
    fn blocks_that_are_not_certificates_give_no_anchor() {
        let not_a_cert = pem_block("CERTIFICATE", "AAAA");
        let key = pem_block("PRIVATE KEY", "AAAA");
        let pem = format!("{key}{not_a_cert}{not_a_cert}");
        assert!(trust_anchors(pem.as_bytes()).is_err());
    }

    #[test]
    fn certificate_reasons_are_stable_codes() {
        assert_eq!(
            certificate_reason(&CertificateError::UnknownIssuer),
            "UnknownIssuer"
        );
        assert_eq!(
            certificate_reason(&CertificateError::NotValidForName),
            "NotValidForName"
        );
        assert_eq!(certificate_reason(&CertificateError::Expired), "Expired");
        assert_eq!(
            certificate_reason(&CertificateError::NotValidYet),
            "NotValidYet"
        );
        assert_eq!(
            certificate_reason(&CertificateError::ApplicationVerificationFailure),
            "ApplicationVerificationFailure"
        );
        let failure = TlsFailure::from(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature,
        ));
        assert!(matches!(
            failure,
            TlsFailure::Certificate {
                reason: "BadSignature",
                ..
            }
        ));
        let other = TlsFailure::from(rustls::Error::DecryptError);
        assert!(matches!(other, TlsFailure::Protocol(_)));
    }

    /// The fuzz target's seed CA (valid 2025-2125).
    const TEST_CA: &str = "\
-----BEGIN CERTIFICATE-----
MIIBcDCCARWgAwIBAgIUSBLIV2e8KrMmIY4CPC7677MQu/IwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQdGVzdCBDQSAyZTMzZmI5MDAgFw0yNTAxMDEwMDAwMDBaGA8y
MTI1MDEwMTAwMDAwMFowGzEZMBcGA1UEAwwQdGVzdCBDQSAyZTMzZmI5MDBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABNZWt9/AV0oOO2KvPsOmd5H6/ej986yNXxIp
fnZ1HKdFYr0dqjuQsNk+5LhtBK++4s0l0uVxjmRaZ72V0ID0SwqjNTAzMBIGA1Ud
EwEB/wQIMAYBAf8CAQAwHQYDVR0OBBYEFIqiV519OfySSnLI9dKdCTrNig49MAoG
CCqGSM49BAMCA0kAMEYCIQC7bH86B756do8pdRnxdkEwRKLLwZU4ISTyok0DNCdi
xgIhAIfvIafRpmXx/2PK8nFjn104zAYUfZn5DQ4MsNaoClH0
-----END CERTIFICATE-----
";

    #[test]
    fn config_is_rustls_safe_defaults_on_aws_lc_without_early_data_or_key_log() {
        let config = TlsConfig::new(TEST_CA.as_bytes(), vec![b"h2".to_vec()]).unwrap();
        assert_eq!(config.root_count(), 1);
        assert_eq!(config.skipped_count(), 0);
        let inner = &config.config;
        assert!(!inner.enable_early_data);
        // rustls's NoKeyLog, not KeyLogFile (which would follow SSLKEYLOGFILE).
        assert_eq!(format!("{:?}", inner.key_log), "NoKeyLog");
        assert_eq!(inner.alpn_protocols, vec![b"h2".to_vec()]);
        let provider = inner.crypto_provider();
        let defaults = rustls::crypto::aws_lc_rs::default_provider();
        let suites = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        assert_eq!(suites(provider), suites(&defaults));
        let first_group = provider.kx_groups.first().map(|g| g.name());
        assert_eq!(first_group, Some(rustls::NamedGroup::X25519MLKEM768));
    }

    #[test]
    fn take_tls_into_fills_only_a_fresh_buffer_of_the_pending_size() {
        let config = TlsConfig::new(TEST_CA.as_bytes(), vec![]).unwrap();
        let mut session = TlsSession::new(&config, server_name("localhost").unwrap()).unwrap();
        let pending = session.tls_pending();
        assert!(pending > 0, "the ClientHello waits");
        for (size, prefix) in [(pending - 1, 0), (pending + 1, 0), (pending, 1)] {
            let mut memory = vec![std::mem::MaybeUninit::<u8>::uninit(); size];
            let mut out = Fill::new(&mut memory);
            out.put(&b"x"[..prefix]).unwrap();
            assert!(session.take_tls_into(&mut out).is_err(), "{size}/{prefix}");
            assert_eq!(out.filled(), prefix, "nothing written");
            assert_eq!(session.tls_pending(), pending, "nothing taken");
        }
        let hello = session.take_tls().unwrap();
        assert_eq!(hello.len(), pending);
        assert_eq!(hello[0], 0x16, "a handshake record");
        assert_eq!(session.tls_pending(), 0);
    }

    #[test]
    fn a_session_offers_its_client_hello_at_once() {
        let config = TlsConfig::new(TEST_CA.as_bytes(), vec![]).unwrap();
        let mut session = TlsSession::new(&config, server_name("localhost").unwrap()).unwrap();
        assert!(session.handshaking());
        let hello = session.take_tls().unwrap();
        assert_eq!(hello[0], 0x16, "a handshake record");
        assert_eq!(session.tls_pending(), 0);
        let refused = session.send(b"early");
        assert!(matches!(refused, Err(TlsFailure::Protocol(_))));
        assert!(
            session.failure().is_none(),
            "a refused early send does not fail the session"
        );
    }

    #[test]
    fn receive_into_counts_what_it_wrote_also_when_it_fails() {
        let config = TlsConfig::new(TEST_CA.as_bytes(), vec![]).unwrap();
        let mut session = TlsSession::new(&config, server_name("localhost").unwrap()).unwrap();
        let mut out = [0u8; 64];
        let mut written = usize::MAX;
        session.receive_into(b"", &mut out, &mut written).unwrap();
        assert_eq!(written, 0);
        // A cleartext record of an unknown type instead of the ServerHello.
        let garbage = b"\x42\x03\x03\x00\x04abcd";
        written = usize::MAX;
        assert!(session
            .receive_into(garbage, &mut out, &mut written)
            .is_err());
        assert_eq!(written, 0, "nothing authentic was written");
        written = usize::MAX;
        assert!(session.receive_into(b"", &mut out, &mut written).is_err());
        assert_eq!(written, 0, "a failed session writes nothing");
        assert!(session.receive(b"").is_err());
    }

    #[test]
    fn server_names_are_checked() {
        assert!(server_name("example.com").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("::1").is_ok());
        assert!(server_name("").is_err());
        assert!(server_name("bad name").is_err());
    }
}
