//! `tls::TlsSession` (what `_core.TlsSession` runs) fed a hostile server's bytes. The first
//! byte picks the server name (DNS or IP), the size of the pieces the rest is fed in and the
//! size of the reads. Any TLS failure is fine; a panic, abort, hang or runaway allocation is
//! not, and neither is a session whose accounting is off:
//! - `receive` returns `plaintext_pending`, and `read_into` hands over exactly that much;
//! - `receive_into` (every other piece) writes at most its buffer, and what it wrote plus
//!   what then waits is what `receive` would have left waiting;
//! - `take_tls` returns exactly `tls_pending` bytes, and nothing is pending after it;
//! - a failed session stays failed: `receive` and `send` keep refusing.
//!
//! The seeds are a real server's first flight (TLS 1.3 and TLS 1.2, whose certificates travel
//! in the clear, so mutations reach certificate parsing and verification) for a certificate
//! issued by the CA below; the handshake itself cannot complete (each run's key share is new).
#![no_main]

use std::sync::OnceLock;

use _core::tls::{server_name, TlsConfig, TlsSession};
use libfuzzer_sys::fuzz_target;

/// The CA of the seeds' server (valid 2025-2125; its key is gone).
const SEED_CA: &str = "\
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

fn config() -> &'static TlsConfig {
    static CONFIG: OnceLock<TlsConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        TlsConfig::new(SEED_CA.as_bytes(), vec![b"http/1.1".to_vec()]).expect("the seed CA")
    })
}

fn drain(session: &mut TlsSession, read_size: usize) {
    let mut buffer = vec![0; read_size];
    while session.plaintext_pending() > 0 {
        let pending = session.plaintext_pending();
        let n = session
            .read_into(&mut buffer)
            .expect("pending plaintext is handed over");
        assert_eq!(
            n,
            pending.min(read_size),
            "read_into moved what was pending"
        );
        assert_eq!(session.plaintext_pending(), pending - n);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let name = if mode & 1 == 0 {
        "localhost"
    } else {
        "127.0.0.1"
    };
    let step = 1 + usize::from(mode >> 1) * 67;
    let read_size = 1 + usize::from(mode % 7) * 997;
    let mut session =
        TlsSession::new(config(), server_name(name).expect("a valid name")).expect("a new session");
    let mut failed = false;
    let mut into = vec![0; read_size];
    for (index, piece) in stream.chunks(step).enumerate() {
        let before = session.plaintext_pending();
        let result = if index % 2 == 0 {
            session.receive(piece)
        } else {
            let mut written = 0;
            let result = session.receive_into(piece, &mut into, &mut written);
            assert!(written <= into.len(), "receive_into wrote past its buffer");
            if failed {
                assert_eq!(written, 0, "a failed session wrote plaintext");
            }
            assert!(written >= before.min(into.len()), "what waited came first");
            result.map(|()| session.plaintext_pending())
        };
        match result {
            Ok(pending) => {
                assert!(!failed, "a failed session accepted more bytes");
                assert_eq!(pending, session.plaintext_pending());
            }
            Err(_) => {
                failed = true;
                assert!(session.failure().is_some());
            }
        }
        let announced = session.tls_pending();
        let out = session.take_tls().expect("take_tls");
        assert_eq!(
            out.len(),
            announced,
            "take_tls returned what tls_pending announced"
        );
        assert_eq!(session.tls_pending(), 0);
        drain(&mut session, read_size);
    }
    if failed {
        assert!(session.receive(b"\x17\x03\x03\x00\x00").is_err());
        assert!(session.send(b"data").is_err());
    }
    session.close().expect("close never fails");
    let announced = session.tls_pending();
    assert_eq!(session.take_tls().expect("take_tls").len(), announced);
});
