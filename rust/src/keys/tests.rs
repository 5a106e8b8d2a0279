//! Unit tests of the key handles, their PEM/PKCS#8 encodings and the password KDF.

#![forbid(unsafe_code)]

use super::password::scrypt;
use super::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn scrypt_matches_rfc7914_vectors() {
    let mut out = [0u8; 64];
    scrypt(16, 1, 1, b"", b"", &mut out).unwrap();
    assert_eq!(
        hex(&out),
        "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442\
         fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906"
    );
    scrypt(1024, 8, 16, b"NaCl", b"password", &mut out).unwrap();
    assert_eq!(
        hex(&out),
        "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162\
         2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
    );
}

/// Issue 10 finding 9: every table scrypt allocates is bounded before anything is
/// allocated (B = p·r·128 was not: N=2, r=65535, p=512 asked for 4 GiB).
#[test]
fn finding9_scrypt_refuses_every_allocation_past_the_budget() {
    let cases: [(u64, u64, u64, &str); 8] = [
        (2, 65535, 512, "MiB"),        // B: p·r·128 = 4 GiB
        (2, 32768, 70, "MiB"),         // B alone over 256 MiB, work within bounds
        (1 << 20, 8, 1, "MiB"),        // V: N·r·128 = 1 GiB
        (1 << 18, 8, 2, "MiB"),        // V + B + T: just over 256 MiB
        (1 << 40, 8, 1, "MiB"),        // V: 2^50 bytes
        (1 << 16, 8, 64, "work"),      // 64 MiB but N·r·p = 2^25
        (3, 8, 1, "power of two"),     // not a power of two
        (1 << 14, 0, 1, "at least 1"), // r = 0
    ];
    for (n, r, p, reason) in cases {
        let mut out = [0u8; 32];
        match scrypt(n, r, p, b"salt", b"password", &mut out) {
            Err(CoreError::KeyFormat(m)) => {
                assert!(m.contains("scrypt parameters are invalid"), "{m}");
                assert!(m.contains(reason), "N={n} r={r} p={p}: {m}");
            }
            other => panic!("N={n} r={r} p={p}: {other:?}"),
        }
    }
    // Within the budget: aws-lc's own check (N < 2^(16·r)) is a typed error too.
    let mut out = [0u8; 32];
    assert!(matches!(
        scrypt(1 << 16, 1, 1, b"s", b"p", &mut out),
        Err(CoreError::KeyFormat(_))
    ));
}

#[test]
fn generate_refuses_odd_sizes() {
    for bits in [0, 1024, 2047, 4095, 8192] {
        assert!(matches!(
            ClientKeyPair::generate(bits),
            Err(CoreError::InvalidArgument(_))
        ));
    }
}

#[test]
fn pem_round_trip_plain_and_encrypted() {
    let kp = ClientKeyPair::generate(2048).unwrap();
    assert_eq!(kp.bits(), 2048);
    assert!(kp.fingerprint().starts_with("sha256:") && kp.fingerprint().len() == 71);

    let plain = kp.private_pem(None).unwrap();
    let back = ClientKeyPair::from_pem(&plain, None).unwrap();
    assert_eq!(back.fingerprint(), kp.fingerprint());

    let enc = kp.private_pem(Some(b"correct horse")).unwrap();
    assert!(enc.starts_with(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let back = ClientKeyPair::from_pem(&enc, Some(b"correct horse")).unwrap();
    assert_eq!(back.fingerprint(), kp.fingerprint());
    assert!(matches!(
        ClientKeyPair::from_pem(&enc, Some(b"wrong horse!")),
        Err(CoreError::KeyPassword(_))
    ));
    assert!(matches!(
        ClientKeyPair::from_pem(&enc, None),
        Err(CoreError::KeyPassword(_))
    ));
    assert!(matches!(
        kp.private_pem(Some(b"short")),
        Err(CoreError::KeyPassword(_))
    ));
}

#[test]
fn oaep_round_trip_and_wipe() {
    let kp = ClientKeyPair::generate(2048).unwrap();
    let server = ServerPublicKey::from_pem(kp.public_key_pem().as_bytes()).unwrap();
    assert_eq!(server.fingerprint(), kp.fingerprint());
    let mut ct = vec![0u8; server.modulus_bytes()];
    let n = server
        .encrypt_oaep(b"0123456789abcdef0123456789abcdef", &mut ct)
        .unwrap();
    assert_eq!(n, 256);
    let mut out = [0u8; 256];
    let m = kp.decrypt_oaep(&ct, &mut out).unwrap();
    assert_eq!(&out[..m], b"0123456789abcdef0123456789abcdef");
    ct[10] ^= 1;
    assert!(matches!(
        kp.decrypt_oaep(&ct, &mut out),
        Err(CoreError::Crypto)
    ));
    kp.wipe();
    assert!(kp.is_wiped());
    assert!(matches!(
        kp.decrypt_oaep(&ct, &mut out),
        Err(CoreError::KeyDisposed)
    ));
    assert!(matches!(kp.private_pem(None), Err(CoreError::KeyDisposed)));
}

#[test]
fn garbage_pem_is_a_format_error() {
    for text in [
        &b"hello"[..],
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    ] {
        assert!(matches!(
            ClientKeyPair::from_pem(text, None),
            Err(CoreError::KeyFormat(_))
        ));
    }
    assert!(matches!(
        ServerPublicKey::from_pem(b"nope"),
        Err(CoreError::KeyFormat(_))
    ));
}
