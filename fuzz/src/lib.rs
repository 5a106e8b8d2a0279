//! Shared fixtures of the fuzz targets: one client key pair per fuzzing process.
//!
//! RSA key generation costs far more than one fuzz iteration, so the key is made once; every
//! target then exercises the core's public API exactly as the Python bindings call it.

use std::sync::OnceLock;

use _core::keys::ClientKeyPair;

/// 2048 bits: the smallest size the core accepts, so that each unwrap attempt stays cheap.
pub const FUZZ_KEY_BITS: usize = 2048;

pub fn keypair() -> &'static ClientKeyPair {
    static KEYPAIR: OnceLock<ClientKeyPair> = OnceLock::new();
    KEYPAIR.get_or_init(|| {
        ClientKeyPair::generate(FUZZ_KEY_BITS).expect("RSA key generation for the fuzz fixture")
    })
}
