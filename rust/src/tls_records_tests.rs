//! The core's TLS 1.3 record layer against rustls's own record protection (its
//! `Tls13AeadAlgorithm` encrypters and decrypters: an implementation written apart), and
//! against records forged here for every rule of RFC 8446 section 5.

use super::*;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, Iv, MessageDecrypter, MessageEncrypter, OutboundChunks,
    OutboundPlainMessage,
};
use rustls::{ContentType, ProtocolVersion};

const CLIENT_KEY: [u8; 32] = [0x11; 32];
const CLIENT_IV: [u8; 12] = [0x22; 12];
const SERVER_KEY: [u8; 32] = [0x33; 32];
const SERVER_IV: [u8; 12] = [0x44; 12];

fn keys(key: &'static [u8], iv: &'static [u8], seq: u64) -> Keys<'static> {
    Keys {
        algorithm: &AES_256_GCM,
        key,
        iv,
        seq,
    }
}

/// The client's layer: it seals with the client's keys and opens the server's.
fn client() -> RecordLayer {
    client_with_limit(u64::MAX)
}

fn client_with_limit(limit: u64) -> RecordLayer {
    RecordLayer::from_keys(
        keys(&CLIENT_KEY, &CLIENT_IV, 0),
        keys(&SERVER_KEY, &SERVER_IV, 0),
        limit,
    )
    .unwrap()
}

fn suite() -> &'static rustls::Tls13CipherSuite {
    rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384
        .tls13()
        .unwrap()
}

/// rustls sealing as the server does.
fn rustls_server() -> Box<dyn MessageEncrypter> {
    suite()
        .aead_alg
        .encrypter(AeadKey::from(SERVER_KEY), Iv::new(SERVER_IV))
}

/// rustls opening what the client sends.
fn rustls_opener() -> Box<dyn MessageDecrypter> {
    suite()
        .aead_alg
        .decrypter(AeadKey::from(CLIENT_KEY), Iv::new(CLIENT_IV))
}

fn rustls_record(
    encrypter: &mut dyn MessageEncrypter,
    typ: ContentType,
    content: &[u8],
    seq: u64,
) -> Vec<u8> {
    let message = OutboundPlainMessage {
        typ,
        version: ProtocolVersion::TLSv1_2,
        payload: OutboundChunks::Single(content),
    };
    encrypter.encrypt(message, seq).unwrap().encode()
}

/// A server that seals whatever inner plaintext (content, type, padding) and outer header it
/// is told to, for the records rustls would never make.
struct Forger {
    key: LessSafeKey,
    seq: u64,
}

impl Forger {
    fn new() -> Self {
        Forger {
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &SERVER_KEY).unwrap()),
            seq: 0,
        }
    }

    fn raw(&mut self, outer: u8, inner: &[u8]) -> Vec<u8> {
        let length = inner.len() + TAG;
        let header = [outer, 3, 3, (length >> 8) as u8, length as u8];
        let mut nonce = SERVER_IV;
        for (byte, seq) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *byte ^= seq;
        }
        self.seq += 1;
        let mut body = inner.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut body,
            )
            .unwrap();
        [header.as_slice(), &body].concat()
    }

    fn record(&mut self, kind: u8, content: &[u8]) -> Vec<u8> {
        self.raw(APPLICATION_DATA, &[content, &[kind]].concat())
    }
}

/// The records a fresh server forges for `(content type, content)` in turn, back to back.
fn forged(records: &[(u8, &[u8])]) -> Vec<u8> {
    let mut forger = Forger::new();
    records
        .iter()
        .flat_map(|&(kind, content)| forger.record(kind, content))
        .collect()
}

fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (state >> 16) as u8
        })
        .collect()
}

/// Open `wire` in the pieces `cuts` makes of it, into an `out` of `room` bytes.
fn open_in_pieces(
    layer: &mut RecordLayer,
    wire: &[u8],
    cuts: &[usize],
    room: usize,
) -> (Vec<u8>, Vec<u8>, Result<bool, RecordError>) {
    let mut out = vec![0u8; room];
    let mut overflow = Vec::new();
    let mut to = Plaintext {
        out: &mut out,
        written: 0,
        overflow: &mut overflow,
    };
    let mut start = 0;
    let mut result = Ok(false);
    for &end in cuts.iter().chain([wire.len()].iter()) {
        result = layer.open(&wire[start..end], &mut to);
        start = end;
        if !matches!(result, Ok(false)) {
            break;
        }
    }
    let written = to.written;
    out.truncate(written);
    (out, overflow, result)
}

fn open_all(wire: &[u8], room: usize) -> (Vec<u8>, Vec<u8>, Result<bool, RecordError>) {
    open_in_pieces(&mut client(), wire, &[], room)
}

fn alert_of(result: Result<bool, RecordError>) -> Option<AlertDescription> {
    result.expect_err("refused").alert
}

#[test]
fn records_rustls_seals_open_into_the_callers_buffer() {
    let mut server = rustls_server();
    let contents = [
        bytes(0, 1),
        bytes(1, 2),
        bytes(1000, 3),
        bytes(MAX_CONTENT, 4),
    ];
    let wire: Vec<u8> = contents
        .iter()
        .enumerate()
        .flat_map(|(seq, content)| {
            rustls_record(
                &mut *server,
                ContentType::ApplicationData,
                content,
                seq as u64,
            )
        })
        .collect();
    let expected = contents.concat();
    let (out, overflow, result) = open_all(&wire, expected.len() + 64);
    assert_eq!(result, Ok(false));
    assert_eq!(out, expected);
    assert!(overflow.is_empty());
}

#[test]
fn what_we_seal_rustls_opens_record_by_record() {
    let mut layer = client();
    let data = bytes(40_000, 5);
    let mut wire = Vec::new();
    layer.seal_application_data(&data, &mut wire).unwrap();
    assert_eq!(wire.len(), RecordLayer::sealed_len(data.len()));
    layer
        .seal_alert(AlertDescription::CloseNotify, false, &mut wire)
        .unwrap();
    let mut opener = rustls_opener();
    let (mut content, mut rest, mut seq) = (Vec::new(), &mut wire[..], 0);
    let mut types = Vec::new();
    while !rest.is_empty() {
        assert_eq!(&rest[..3], &[APPLICATION_DATA, 3, 3], "the outer header");
        let length = HEADER + body_length(rest);
        let (record, tail) = rest.split_at_mut(length);
        let message = InboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            &mut record[HEADER..],
        );
        let plain = opener.decrypt(message, seq).unwrap();
        assert!(plain.payload.len() <= MAX_CONTENT);
        types.push(plain.typ);
        if plain.typ == ContentType::ApplicationData {
            content.extend_from_slice(plain.payload);
        } else {
            assert_eq!(plain.payload, &[1, 0], "a warning close_notify");
        }
        rest = tail;
        seq += 1;
    }
    assert_eq!(content, data);
    assert_eq!(
        types.len(),
        4,
        "three records of at most 2^14 bytes and the alert"
    );
    assert_eq!(types[3], ContentType::Alert);
}

#[test]
fn nonces_follow_the_sequence_numbers_handed_over() {
    let mut layer = RecordLayer::from_keys(
        keys(&CLIENT_KEY, &CLIENT_IV, 7),
        keys(&SERVER_KEY, &SERVER_IV, 9),
        u64::MAX,
    )
    .unwrap();
    let mut wire = Vec::new();
    layer.seal_application_data(b"seventh", &mut wire).unwrap();
    let message = InboundOpaqueMessage::new(
        ContentType::ApplicationData,
        ProtocolVersion::TLSv1_2,
        &mut wire[HEADER..],
    );
    assert_eq!(
        rustls_opener().decrypt(message, 7).unwrap().payload,
        b"seventh"
    );
    let mut server = rustls_server();
    let ninth = rustls_record(&mut *server, ContentType::ApplicationData, b"ninth", 9);
    let (out, _, result) = open_in_pieces(&mut layer, &ninth, &[], 16);
    assert_eq!((out.as_slice(), result), (&b"ninth"[..], Ok(false)));
    let eighth = rustls_record(&mut *server, ContentType::ApplicationData, b"eighth", 8);
    assert_eq!(
        alert_of(open_in_pieces(&mut layer, &eighth, &[], 16).2),
        Some(AlertDescription::BadRecordMac)
    );
}

#[test]
fn the_keys_rustls_extracts_work_as_explicit_ones() {
    let secrets = |key: [u8; 32], iv: [u8; 12]| ConnectionTrafficSecrets::Aes256Gcm {
        key: AeadKey::from(key),
        iv: Iv::new(iv),
    };
    let extracted = ExtractedSecrets {
        tx: (3, secrets(CLIENT_KEY, CLIENT_IV)),
        rx: (0, secrets(SERVER_KEY, SERVER_IV)),
    };
    let mut layer = RecordLayer::from_secrets(extracted, u64::MAX).unwrap();
    let mut wire = Vec::new();
    layer.seal_application_data(b"third", &mut wire).unwrap();
    let message = InboundOpaqueMessage::new(
        ContentType::ApplicationData,
        ProtocolVersion::TLSv1_2,
        &mut wire[HEADER..],
    );
    assert_eq!(
        rustls_opener().decrypt(message, 3).unwrap().payload,
        b"third"
    );
    let record = Forger::new().record(APPLICATION_DATA, b"zeroth");
    assert_eq!(open_in_pieces(&mut layer, &record, &[], 64).0, b"zeroth");
}

#[test]
fn chacha20_and_aes128_suites_seal_and_open() {
    let chacha = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256
        .tls13()
        .unwrap();
    let mut server = chacha
        .aead_alg
        .encrypter(AeadKey::from(SERVER_KEY), Iv::new(SERVER_IV));
    let record = rustls_record(&mut *server, ContentType::ApplicationData, b"chacha", 0);
    let chacha_keys = |key: &'static [u8], iv: &'static [u8]| Keys {
        algorithm: &CHACHA20_POLY1305,
        key,
        iv,
        seq: 0,
    };
    let mut layer = RecordLayer::from_keys(
        chacha_keys(&CLIENT_KEY, &CLIENT_IV),
        chacha_keys(&SERVER_KEY, &SERVER_IV),
        u64::MAX,
    )
    .unwrap();
    assert_eq!(open_in_pieces(&mut layer, &record, &[], 64).0, b"chacha");
    // AES-128: what one side seals, its mirror opens.
    let aes128 = |key: &'static [u8], iv: &'static [u8]| Keys {
        algorithm: &AES_128_GCM,
        key,
        iv,
        seq: 0,
    };
    let mut sender = RecordLayer::from_keys(
        aes128(&CLIENT_KEY[..16], &CLIENT_IV),
        aes128(&SERVER_KEY[..16], &SERVER_IV),
        9,
    )
    .unwrap();
    let mut receiver = RecordLayer::from_keys(
        aes128(&SERVER_KEY[..16], &SERVER_IV),
        aes128(&CLIENT_KEY[..16], &CLIENT_IV),
        9,
    )
    .unwrap();
    let mut wire = Vec::new();
    sender
        .seal_application_data(&bytes(20_000, 6), &mut wire)
        .unwrap();
    assert_eq!(
        open_in_pieces(&mut receiver, &wire, &[], 20_000).0,
        bytes(20_000, 6)
    );
    // A key of the wrong length is refused, not used.
    assert!(RecordLayer::from_keys(
        aes128(&CLIENT_KEY, &CLIENT_IV),
        aes128(&SERVER_KEY, &SERVER_IV),
        9
    )
    .is_err());
}

#[test]
fn content_past_the_callers_buffer_waits_in_order() {
    let mut forger = Forger::new();
    let contents = [bytes(10_000, 7), bytes(MAX_CONTENT, 8), bytes(3, 9)];
    let wire: Vec<u8> = contents
        .iter()
        .flat_map(|c| forger.record(APPLICATION_DATA, c))
        .collect();
    let all = contents.concat();
    for room in [
        0,
        1,
        9_999,
        10_000,
        10_016,
        20_000,
        all.len() - 1,
        all.len(),
        all.len() + 40,
    ] {
        let (out, overflow, result) = open_all(&wire, room);
        assert_eq!(result, Ok(false));
        assert_eq!(out.len(), room.min(all.len()), "room {room}");
        assert_eq!([out, overflow].concat(), all, "room {room}");
    }
}

#[test]
fn records_split_anywhere_arrive_whole() {
    let mut forger = Forger::new();
    let contents = [bytes(300, 10), bytes(0, 11), bytes(5_000, 12)];
    let wire: Vec<u8> = contents
        .iter()
        .flat_map(|c| forger.record(APPLICATION_DATA, c))
        .collect();
    let all = contents.concat();
    for cut in 0..=wire.len() {
        let (out, overflow, result) = open_in_pieces(&mut client(), &wire, &[cut], 2_000);
        assert_eq!(result, Ok(false), "cut at {cut}");
        assert_eq!([out, overflow].concat(), all, "cut at {cut}");
    }
    let every_byte: Vec<usize> = (1..wire.len()).collect();
    let (out, overflow, _) = open_in_pieces(&mut client(), &wire, &every_byte, all.len());
    assert_eq!([out, overflow].concat(), all);
}

#[test]
fn padding_is_stripped_and_content_types_are_required() {
    let mut forger = Forger::new();
    let padded = forger.raw(
        APPLICATION_DATA,
        &[b"padded".as_slice(), &[APPLICATION_DATA], &[0; 200]].concat(),
    );
    for room in [0, 6, 300] {
        let (out, overflow, result) = open_in_pieces(&mut client(), &padded, &[], room);
        assert_eq!(
            (result, [out, overflow].concat()),
            (Ok(false), b"padded".to_vec())
        );
    }
    let mut forger = Forger::new();
    let no_type = forger.raw(APPLICATION_DATA, &[0; 40]);
    assert_eq!(
        alert_of(open_all(&no_type, 64).2),
        Some(AlertDescription::UnexpectedMessage)
    );
    let unknown = forged(&[(0x42, b"what")]);
    assert_eq!(
        alert_of(open_all(&unknown, 64).2),
        Some(AlertDescription::UnexpectedMessage)
    );
    // Content past 2^14 bytes, within the ciphertext's limit, is refused.
    let long = forged(&[(APPLICATION_DATA, &bytes(MAX_CONTENT + 1, 13))]);
    for room in [0, MAX_CONTENT + 300] {
        assert_eq!(
            alert_of(open_all(&long, room).2),
            Some(AlertDescription::RecordOverflow)
        );
    }
    // A full 2^14 bytes with the most padding allowed is fine.
    let mut forger = Forger::new();
    let inner = [
        bytes(MAX_CONTENT, 14).as_slice(),
        &[APPLICATION_DATA],
        &[0; 255 - TAG],
    ]
    .concat();
    let full = forger.raw(APPLICATION_DATA, &inner);
    assert_eq!(body_length(&full), MAX_CIPHERTEXT);
    assert_eq!(open_all(&full, 0).1, bytes(MAX_CONTENT, 14));
}

#[test]
fn headers_are_refused_before_their_bodies_arrive() {
    for outer in [20u8, ALERT, HANDSHAKE, 24, 0, 0xff] {
        let header = [outer, 3, 3, 0, 40];
        assert_eq!(
            alert_of(open_all(&header, 64).2),
            Some(AlertDescription::UnexpectedMessage),
            "type {outer}"
        );
        // Also when the header itself arrives in pieces.
        let result = open_in_pieces(&mut client(), &header, &[1, 2, 4], 64).2;
        assert_eq!(alert_of(result), Some(AlertDescription::UnexpectedMessage));
    }
    let too_long = (MAX_CIPHERTEXT + 1) as u16;
    let header = [
        APPLICATION_DATA,
        3,
        3,
        (too_long >> 8) as u8,
        too_long as u8,
    ];
    assert_eq!(
        alert_of(open_all(&header, 64).2),
        Some(AlertDescription::RecordOverflow)
    );
    for short in [0u8, 1, 16] {
        let header = [APPLICATION_DATA, 3, 3, 0, short];
        assert_eq!(
            alert_of(open_all(&header, 64).2),
            Some(AlertDescription::BadRecordMac),
            "length {short}"
        );
    }
}

#[test]
fn a_forged_record_fails_and_leaves_nothing_of_itself_behind() {
    let mut forger = Forger::new();
    let good = forger.record(APPLICATION_DATA, b"authentic");
    let secret = bytes(2_000, 15);
    let forged = forger.record(APPLICATION_DATA, &secret);
    for at in [
        0,
        1,
        2,
        HEADER,
        HEADER + 1_000,
        forged.len() - TAG,
        forged.len() - 1,
    ] {
        let mut tampered = forged.clone();
        tampered[at] ^= 0x20;
        let wire = [good.as_slice(), &tampered].concat();
        for room in [4_000, 100] {
            let mut out = vec![0u8; room];
            let mut overflow = Vec::new();
            let mut to = Plaintext {
                out: &mut out,
                written: 0,
                overflow: &mut overflow,
            };
            let result = client().open(&wire, &mut to);
            let written = to.written;
            let error = result.expect_err("tampered");
            let expected = if at == 0 {
                AlertDescription::UnexpectedMessage // another outer type
            } else {
                AlertDescription::BadRecordMac
            };
            assert_eq!(error.alert, Some(expected), "byte {at}");
            assert_eq!([&out[..written], &overflow].concat(), b"authentic");
            assert!(
                out[written..].iter().all(|&b| b == 0),
                "byte {at}: nothing unauthenticated stays"
            );
            assert!(!error.message.contains("authentic"));
        }
    }
}

#[test]
fn replayed_and_reordered_records_fail() {
    let mut forger = Forger::new();
    let first = forger.record(APPLICATION_DATA, b"first");
    let second = forger.record(APPLICATION_DATA, b"second");
    let twice = [first.as_slice(), &first].concat();
    assert_eq!(
        alert_of(open_all(&twice, 64).2),
        Some(AlertDescription::BadRecordMac)
    );
    let swapped = [second.as_slice(), &first].concat();
    assert_eq!(
        alert_of(open_all(&swapped, 64).2),
        Some(AlertDescription::BadRecordMac)
    );
}

#[test]
fn close_notify_ends_the_stream_and_what_follows_is_dropped() {
    for level in [1u8, 2] {
        for room in [0, 64] {
            let wire = forged(&[
                (APPLICATION_DATA, b"last words"),
                (ALERT, &[level, 0]),
                (APPLICATION_DATA, b"after the end"),
            ]);
            let (out, overflow, result) = open_all(&wire, room);
            assert_eq!(result, Ok(true));
            assert_eq!([out, overflow].concat(), b"last words");
        }
    }
}

#[test]
fn alerts_other_than_close_notify() {
    let canceled = forged(&[(ALERT, &[1, USER_CANCELED]), (APPLICATION_DATA, b"on")]);
    let (out, _, result) = open_all(&canceled, 64);
    assert_eq!(
        (out.as_slice(), result),
        (&b"on"[..], Ok(false)),
        "a warning user_canceled is ignored"
    );
    for room in [0, 64] {
        let fatal = forged(&[(ALERT, &[2, 40])]);
        let error = open_all(&fatal, room).2.unwrap_err();
        assert_eq!(error.message, "received fatal alert: HandshakeFailure");
        assert_eq!(
            error.alert, None,
            "nothing is sent back for the peer's own alert"
        );
        let warning = forged(&[(ALERT, &[1, 40])]);
        assert_eq!(
            alert_of(open_all(&warning, room).2),
            Some(AlertDescription::DecodeError)
        );
        for content in [&[2u8][..], &[2, 40, 0], &[]] {
            let mut forger = Forger::new();
            let malformed = if content.is_empty() {
                forger.raw(APPLICATION_DATA, &[ALERT])
            } else {
                forger.record(ALERT, content)
            };
            assert_eq!(
                alert_of(open_all(&malformed, room).2),
                Some(AlertDescription::DecodeError),
                "{content:?}"
            );
        }
    }
}

fn handshake_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len() as u32;
    [&[kind][..], &n.to_be_bytes()[1..], body].concat()
}

#[test]
fn tickets_after_the_handshake_are_dropped_whole_or_split() {
    let ticket = handshake_message(NEW_SESSION_TICKET, &bytes(300, 16));
    let twice = [ticket.as_slice(), &ticket].concat();
    for room in [0, 1_000] {
        let wire = forged(&[
            (APPLICATION_DATA, b"before "),
            (HANDSHAKE, &ticket),
            (HANDSHAKE, &ticket[..100]),
            (HANDSHAKE, &ticket[100..]),
            (HANDSHAKE, &twice),
            (APPLICATION_DATA, b"after"),
        ]);
        let (out, overflow, result) = open_all(&wire, room);
        assert_eq!(result, Ok(false));
        assert_eq!([out, overflow].concat(), b"before after");
    }
}

#[test]
fn other_post_handshake_messages_end_the_session() {
    let ticket = handshake_message(NEW_SESSION_TICKET, &bytes(300, 17));
    let interrupted = forged(&[(HANDSHAKE, &ticket[..100]), (APPLICATION_DATA, b"between")]);
    assert_eq!(
        alert_of(open_all(&interrupted, 64).2),
        Some(AlertDescription::UnexpectedMessage)
    );
    let update = forged(&[(HANDSHAKE, &handshake_message(KEY_UPDATE, &[0]))]);
    let error = open_all(&update, 64).2.unwrap_err();
    assert!(error.key_update);
    assert!(error.message.contains("updated its TLS keys"));
    let mut forger = Forger::new();
    let finished = forger.record(HANDSHAKE, &handshake_message(20, &[0; 48]));
    assert_eq!(
        alert_of(open_all(&finished, 64).2),
        Some(AlertDescription::UnexpectedMessage)
    );
    let empty = forged(&[(HANDSHAKE, b"")]);
    assert_eq!(
        alert_of(open_all(&empty, 64).2),
        Some(AlertDescription::UnexpectedMessage)
    );
    // A message announced past the longest a ticket can be is refused at its header.
    let huge = forged(&[(HANDSHAKE, &[NEW_SESSION_TICKET, 0x7f, 0xff, 0xff])]);
    assert_eq!(
        alert_of(open_all(&huge, 64).2),
        Some(AlertDescription::DecodeError)
    );
}

#[test]
fn the_send_limit_ends_the_session_before_a_nonce_repeats() {
    let mut layer = client_with_limit(2);
    let mut wire = Vec::new();
    layer
        .seal_application_data(&bytes(MAX_CONTENT * 2, 18), &mut wire)
        .unwrap();
    let before = wire.len();
    let error = layer
        .seal_application_data(b"one more", &mut wire)
        .unwrap_err();
    assert!(error.message.contains("record limit"));
    assert_eq!(wire.len(), before, "nothing of the refused record is left");
    assert!(layer
        .seal_alert(AlertDescription::CloseNotify, false, &mut wire)
        .is_err());
}
