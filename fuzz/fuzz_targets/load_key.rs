//! PEM / PKCS#8 / PKCS#1 / PBES2 key loading on hostile input, as the Python bindings call it
//! for `ClientKeyPair.load` and `ServerPublicKey.from_pem`. The first byte picks the entry
//! point; every outcome but a panic, abort, hang or runaway allocation is fine.
#![no_main]

use _core::keys::{ClientKeyPair, ServerPublicKey};
use libfuzzer_sys::fuzz_target;

/// The password of the encrypted seed key in `fuzz/seeds/load_key`.
const SEED_PASSWORD: &[u8] = b"fuzz-password";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, pem)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let _ = ClientKeyPair::from_pem(pem, None);
        }
        1 => {
            let _ = ClientKeyPair::from_pem(pem, Some(SEED_PASSWORD));
        }
        _ => {
            if let Ok(key) = ServerPublicKey::from_pem(pem) {
                // What loads must be usable: a key the core accepted wraps an AES key.
                let mut out = vec![0u8; key.modulus_bytes()];
                key.encrypt_oaep(&[7u8; 32], &mut out)
                    .expect("OAEP with an accepted key");
            }
        }
    }
});
