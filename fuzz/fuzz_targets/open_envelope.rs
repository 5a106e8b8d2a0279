//! `envelope::open` on hostile input. Three modes, chosen by the first byte:
//!
//! * raw: the bytes are a response body as it arrives off the wire; any outcome but a panic,
//!   abort or hang is fine (a success would need a forged GCM tag, so none is expected);
//! * round trip: the bytes are a plaintext; sealed for our own key it must open to exactly the
//!   same bytes;
//! * tamper: a fixed plaintext is sealed, then the bytes overwrite parts of the envelope JSON; the
//!   edited envelope may still open (e.g. an unknown field renamed) but then only to the
//!   original plaintext: never to anything an attacker chose.
//!
//! In the raw and tamper modes, `open` must agree with `open_strict` (the strict reader alone,
//! without the fast path for plain envelopes): same plaintext, or same error text.
#![no_main]

use _core::envelope::{open, open_strict, seal};
use _core::secret::LockedBuf;
use libfuzzer_sys::fuzz_target;
use nomyo_native_fuzz::keypair;

const TAMPER_PLAINTEXT: &[u8] =
    br#"{"id":"c","object":"chat.completion","choices":[{"message":{"content":"fuzz"}}]}"#;

fn sealed(plaintext: &[u8]) -> Vec<u8> {
    let mut buf = LockedBuf::from_slice(plaintext).expect("locked buffer");
    let server_key = keypair()
        .public_key()
        .expect("public half of the fixture key");
    seal(&mut buf, &server_key).expect("sealing a valid plaintext")
}

fn check_round_trip(plaintext: &[u8]) {
    let envelope = sealed(plaintext);
    let opened = open(&envelope, keypair()).expect("an envelope we sealed must open");
    assert_eq!(opened.plaintext.as_slice(), plaintext);
}

fn check_tamper(edits: &[u8]) {
    let mut envelope = sealed(TAMPER_PLAINTEXT);
    // Each edit is (position hi, position lo, new byte).
    for edit in edits.chunks_exact(3) {
        let at = (usize::from(edit[0]) << 8 | usize::from(edit[1])) % envelope.len();
        envelope[at] = edit[2];
    }
    check_fast_path(&envelope);
    if let Ok(opened) = open(&envelope, keypair()) {
        assert_eq!(opened.plaintext.as_slice(), TAMPER_PLAINTEXT);
    }
}

/// `open` (with its fast path for plain envelopes) and `open_strict` (the strict reader
/// alone) agree: the same plaintext, or the same error text.
fn check_fast_path(body: &[u8]) {
    let fast = open(body, keypair());
    let strict = open_strict(body, keypair());
    match (fast, strict) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.plaintext.as_slice(), b.plaintext.as_slice());
            assert_eq!((a.processed_at, a.algorithm), (b.processed_at, b.algorithm));
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("fast path {:?} but strict reader {:?}", a.err(), b.err()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            check_fast_path(rest);
        }
        1 => check_round_trip(rest),
        _ => check_tamper(rest),
    }
});
