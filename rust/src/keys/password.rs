//! PBES2 (PKCS#5) encryption of private key files: PBKDF2 or scrypt, bounded so that a hostile
//! file can neither hang nor abort us, and AES-CBC, all on aws-lc with the keys in locked
//! memory.

use std::num::NonZeroU32;

use aws_lc_rs::cipher::{
    DecryptionContext, EncryptingKey, EncryptionContext, PaddedBlockDecryptingKey,
    UnboundCipherKey, AES_128, AES_192, AES_256,
};
use aws_lc_rs::{pbkdf2, rand};
use pkcs5::pbes2::{self, Kdf, Pbkdf2Prf};
use pkcs8::der::{Decode, Encode};
use pkcs8::EncryptedPrivateKeyInfo;

use crate::error::{CoreError, CoreResult};
use crate::secret::LockedBuf;

pub(super) fn wrong_password() -> CoreError {
    CoreError::KeyPassword("wrong password for the encrypted private key".into())
}

pub(super) fn check_new_password(password: &[u8]) -> CoreResult<()> {
    let chars = match std::str::from_utf8(password) {
        Ok(s) => s.chars().count(),
        Err(_) => password.len(),
    };
    if chars < MIN_PASSWORD_CHARS {
        return Err(CoreError::KeyPassword(format!(
            "the key password is too short: use at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

/// Shortest password accepted when encrypting a key file.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// PBKDF2-HMAC-SHA256 rounds for files we write (OWASP 2023 guidance for SHA-256).
pub const PBKDF2_ITERATIONS: u32 = 600_000;
/// Upper bound on rounds we accept when reading, so a hostile file cannot hang the process: about
/// the time scrypt's work bound allows (2-3 s), 16x the rounds we write. SHA-384/512 rounds cost
/// twice as much, so half as many are allowed.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
const MAX_PBKDF2_ITERATIONS_SHA512: u32 = MAX_PBKDF2_ITERATIONS / 2;
/// scrypt for reading, bounded like OpenSSL's `maxmem`: every table the KDF allocates (B: p·r·128,
/// T: r·128 and V: N·r·128 bytes, one allocation in aws-lc's heap, where it is dump-excluded,
/// locked where RLIMIT_MEMLOCK allows, counted, and wiped when freed) fits in 256 MiB; and the
/// work N·r·p is at most 2^22 (N=2^18, r=8, p=2: about two seconds), so that a hostile file can
/// neither abort nor hang us.
pub const MAX_SCRYPT_MEMORY: u64 = 256 * 1024 * 1024;
const MAX_SCRYPT_WORK: u128 = 1 << 22;

/// scrypt (RFC 7914) by aws-lc, after our bounds: its tables then live in `lc_heap`.
pub(super) fn scrypt(
    n: u64,
    r: u64,
    p: u64,
    salt: &[u8],
    password: &[u8],
    kek: &mut [u8],
) -> CoreResult<()> {
    let invalid = |why: String| {
        CoreError::KeyFormat(format!(
            "the key file's scrypt parameters are invalid: {why}"
        ))
    };
    if n < 2 || !n.is_power_of_two() {
        return Err(invalid("N must be a power of two, at least 2".into()));
    }
    if r == 0 || p == 0 {
        return Err(invalid("r and p must be at least 1".into()));
    }
    let (n, r, p) = (u128::from(n), u128::from(r), u128::from(p));
    let memory = 128 * r * (n + p + 1);
    if memory > u128::from(MAX_SCRYPT_MEMORY) {
        return Err(invalid(format!(
            "they need {} MiB (128·r·(N+p+1) bytes), more than the {} MiB allowed",
            memory.div_ceil(1 << 20),
            MAX_SCRYPT_MEMORY >> 20
        )));
    }
    if n * r * p > MAX_SCRYPT_WORK {
        return Err(invalid(format!(
            "their work N·r·p is {}, more than the {MAX_SCRYPT_WORK} allowed",
            n * r * p
        )));
    }
    let _lc = crate::lc_heap::enter();
    // SAFETY: pointers and lengths describe live slices; aws-lc checks the parameters again
    // (also N < 2^(16·r)) and allocates at most `max_mem` bytes.
    let ok = unsafe {
        aws_lc_sys::EVP_PBE_scrypt(
            password.as_ptr().cast(),
            password.len(),
            salt.as_ptr(),
            salt.len(),
            n as u64,
            r as u64,
            p as u64,
            MAX_SCRYPT_MEMORY as usize,
            kek.as_mut_ptr(),
            kek.len(),
        )
    };
    if ok != 1 {
        // SAFETY: clears this thread's aws-lc error queue.
        unsafe { aws_lc_sys::ERR_clear_error() };
        return Err(invalid(
            "refused by scrypt (N too large for r, or out of memory)".into(),
        ));
    }
    Ok(())
}

/// Derive the PBES2 key-encryption key into `kek`.
pub(super) fn derive_kek(kdf: &Kdf<'_>, password: &[u8], kek: &mut [u8]) -> CoreResult<()> {
    if let Some(len) = kdf.key_length() {
        if usize::from(len) != kek.len() {
            return Err(CoreError::KeyFormat(
                "the key file's PBES2 key length is invalid".into(),
            ));
        }
    }
    match kdf {
        Kdf::Pbkdf2(p) => {
            let (prf, max_rounds) = match p.prf {
                Pbkdf2Prf::HmacWithSha1 => (pbkdf2::PBKDF2_HMAC_SHA1, MAX_PBKDF2_ITERATIONS),
                Pbkdf2Prf::HmacWithSha256 => (pbkdf2::PBKDF2_HMAC_SHA256, MAX_PBKDF2_ITERATIONS),
                Pbkdf2Prf::HmacWithSha384 => {
                    (pbkdf2::PBKDF2_HMAC_SHA384, MAX_PBKDF2_ITERATIONS_SHA512)
                }
                Pbkdf2Prf::HmacWithSha512 => {
                    (pbkdf2::PBKDF2_HMAC_SHA512, MAX_PBKDF2_ITERATIONS_SHA512)
                }
                other => {
                    return Err(CoreError::KeyFormat(format!(
                        "unsupported PBKDF2 hash in the key file ({other:?})"
                    )))
                }
            };
            let rounds = NonZeroU32::new(p.iteration_count)
                .filter(|n| n.get() <= max_rounds)
                .ok_or_else(|| {
                    CoreError::KeyFormat(format!(
                        "the key file's PBKDF2 iteration count is invalid (1 to {max_rounds} \
                         for its hash)"
                    ))
                })?;
            pbkdf2::derive(prf, rounds, p.salt, password, kek);
            Ok(())
        }
        Kdf::Scrypt(p) => scrypt(
            p.cost_parameter,
            u64::from(p.block_size),
            u64::from(p.parallelization),
            p.salt,
            password,
            kek,
        ),
        _ => Err(CoreError::KeyFormat(
            "unsupported key derivation in the key file".into(),
        )),
    }
}

/// `EncryptedPrivateKeyInfo` DER -> `PrivateKeyInfo` DER (zeroized buffer).
pub(super) fn decrypt_pkcs8(der: &[u8], password: &[u8]) -> CoreResult<LockedBuf> {
    let info = EncryptedPrivateKeyInfo::from_der(der).map_err(|_| {
        CoreError::KeyFormat("the encrypted private key is not valid PKCS#8 DER".into())
    })?;
    let params = info.encryption_algorithm.pbes2().ok_or_else(|| {
        CoreError::KeyFormat(
            "the private key uses legacy PBES1 encryption: re-encrypt it with PBES2".into(),
        )
    })?;
    let (algorithm, key_len, iv) = match params.encryption {
        pbes2::EncryptionScheme::Aes128Cbc { iv } => (&AES_128, 16, iv),
        pbes2::EncryptionScheme::Aes192Cbc { iv } => (&AES_192, 24, iv),
        pbes2::EncryptionScheme::Aes256Cbc { iv } => (&AES_256, 32, iv),
        #[allow(unreachable_patterns)]
        _ => {
            return Err(CoreError::KeyFormat(
                "the private key uses a legacy DES cipher: re-encrypt it with AES".into(),
            ))
        }
    };
    let mut kek = LockedBuf::zeroed(key_len)?;
    derive_kek(&params.kdf, password, kek.as_mut_slice())?;
    let key = UnboundCipherKey::new(algorithm, &kek)
        .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
        .map_err(|_| CoreError::KeyFormat("the key file's cipher parameters are invalid".into()))?;
    let mut buf = LockedBuf::from_slice(info.encrypted_data)?;
    let len = key
        .decrypt(buf.as_mut_slice(), DecryptionContext::Iv128(iv.into()))
        .map_err(|_| wrong_password())?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// `PrivateKeyInfo` DER -> PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) `EncryptedPrivateKeyInfo`.
pub(super) fn encrypt_pkcs8(der: &[u8], password: &[u8]) -> CoreResult<Vec<u8>> {
    let failed = || CoreError::KeyFormat("the private key could not be encrypted".into());
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rand::fill(&mut salt).map_err(|_| failed())?;
    rand::fill(&mut iv).map_err(|_| failed())?;
    let mut kek = LockedBuf::zeroed(32)?;
    let rounds = NonZeroU32::new(PBKDF2_ITERATIONS).ok_or_else(failed)?;
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        &salt,
        password,
        kek.as_mut_slice(),
    );
    let key = UnboundCipherKey::new(&AES_256, &kek)
        .and_then(EncryptingKey::cbc)
        .map_err(|_| failed())?;
    // PKCS#7 padding added here, so the plaintext is encrypted in place in locked memory.
    let pad = 16 - der.len() % 16;
    let mut buf = LockedBuf::with_capacity(der.len() + pad)?;
    buf.extend_from_slice(der)?;
    buf.extend_from_slice(&[pad as u8; 16][..pad])?;
    key.less_safe_encrypt(buf.as_mut_slice(), EncryptionContext::Iv128((&iv).into()))
        .map_err(|_| failed())?;
    let params = pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, &iv)
        .map_err(|_| failed())?;
    let info = EncryptedPrivateKeyInfo {
        encryption_algorithm: params.into(),
        encrypted_data: buf.as_slice(),
    };
    info.to_der().map_err(|_| failed())
}
