//! RSA key handles: the client's key pair and a server's public key.
//!
//! The private key exists only inside aws-lc (in `lc_heap`'s locked slabs once installed; every
//! block is zeroed on free) and, transiently, in LockedBufs: the PEM text read from disk, the
//! decoded DER, the PBES2 key-encryption key and the decrypted PKCS#8 document. The one copy we
//! cannot place is aws-lc-rs's `Pkcs8V1Der` on save (a Vec it zeroizes on drop). Nothing here
//! hands private key bytes to a caller.
//!
//! Key files are PKCS#8 PEM, optionally PBES2-encrypted, so that pyca/cryptography (and the
//! reference client) read ours and we read theirs. The PBES2 structures are parsed with
//! RustCrypto `pkcs5`, but the KDF and the AES-CBC run here on aws-lc-rs, because `pkcs5`
//! leaves its derived key on the stack unwiped.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use aws_lc_rs::cipher::{
    DecryptionContext, EncryptingKey, EncryptionContext, PaddedBlockDecryptingKey,
    UnboundCipherKey, AES_128, AES_192, AES_256,
};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey, OAEP_SHA256_MGF1SHA256,
};
use aws_lc_rs::{digest, pbkdf2, rand};
use pkcs5::pbes2::{self, Kdf, Pbkdf2Prf};
use pkcs8::der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use pkcs8::der::pem::{self, LineEnding};
use pkcs8::der::{Decode, Encode};
use pkcs8::{AlgorithmIdentifierRef, EncryptedPrivateKeyInfo, PrivateKeyInfo};

use crate::error::{CoreError, CoreResult};
use crate::secret::LockedBuf;

/// No shorter RSA key is generated, loaded or accepted from a server.
pub const MIN_RSA_BITS: usize = 2048;
/// Sizes `ClientKeyPair::generate` accepts.
pub const GENERATE_BITS: [usize; 3] = [2048, 3072, 4096];
/// The default client key size (PROTOCOL.md section 6).
pub const DEFAULT_BITS: usize = 4096;
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
/// Largest key file we read (a 16384-bit encrypted key is ~13 KiB of PEM).
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

const RSA_ENCRYPTION_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

const LABEL_PRIVATE: &str = "PRIVATE KEY";
const LABEL_ENCRYPTED: &str = "ENCRYPTED PRIVATE KEY";
const LABEL_PKCS1_PRIVATE: &str = "RSA PRIVATE KEY";
const LABEL_PUBLIC: &str = "PUBLIC KEY";
const LABEL_PKCS1_PUBLIC: &str = "RSA PUBLIC KEY";

// ---- public key facts shared by both handles -----------------------------------------------

/// The public half of a key: canonical SPKI DER, its PEM, fingerprint and size.
#[derive(Clone, Debug)]
struct PublicInfo {
    spki_der: Vec<u8>,
    pem: String,
    fingerprint: String,
    bits: usize,
}

impl PublicInfo {
    fn from_key(key: &PublicEncryptingKey) -> CoreResult<Self> {
        let der: PublicKeyX509Der<'static> = key
            .as_der()
            .map_err(|_| CoreError::KeyFormat("the public key could not be encoded".into()))?;
        let spki_der = der.as_ref().to_vec();
        let pem = pem::encode_string(LABEL_PUBLIC, LineEnding::LF, &spki_der)
            .map_err(|_| CoreError::KeyFormat("the public key could not be PEM-encoded".into()))?;
        Ok(Self {
            fingerprint: fingerprint_of(&spki_der),
            spki_der,
            pem,
            bits: key.key_size_bits(),
        })
    }
}

/// `"sha256:" + hex(SHA-256(SubjectPublicKeyInfo DER))`.
pub fn fingerprint_of(spki_der: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, spki_der);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in d.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

// ---- client key pair -----------------------------------------------------------------------

/// The client's RSA key pair. The private key is only reachable through `decrypt_oaep`.
pub struct ClientKeyPair {
    /// `None` once wiped. The lock lets `wipe` run while other threads hold `&self`.
    private: RwLock<Option<PrivateDecryptingKey>>,
    public: PublicInfo,
}

impl std::fmt::Debug for ClientKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKeyPair")
            .field("bits", &self.public.bits)
            .field("fingerprint", &self.public.fingerprint)
            .finish_non_exhaustive()
    }
}

impl ClientKeyPair {
    /// A fresh key pair of 2048, 3072 or 4096 bits (public exponent 65537).
    pub fn generate(bits: usize) -> CoreResult<Self> {
        let _lc = crate::lc_heap::enter();
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            _ => {
                return Err(CoreError::InvalidArgument(format!(
                    "unsupported RSA key size {bits}: choose 2048, 3072 or 4096"
                )))
            }
        };
        let key = PrivateDecryptingKey::generate(size)
            .map_err(|_| CoreError::Memory("RSA key generation failed".into()))?;
        Self::from_private(key)
    }

    fn from_private(key: PrivateDecryptingKey) -> CoreResult<Self> {
        // `public_key()` shares the private EVP_PKEY; drop it before returning so that `wipe`
        // really frees the private numbers.
        let public = PublicInfo::from_key(&key.public_key())?;
        Ok(Self {
            private: RwLock::new(Some(key)),
            public,
        })
    }

    /// Parse an unencrypted PKCS#8 `PrivateKeyInfo` (DER) holding an RSA key >= 2048 bits.
    pub fn from_pkcs8_der(der: &[u8]) -> CoreResult<Self> {
        let _lc = crate::lc_heap::enter();
        let info = PrivateKeyInfo::from_der(der)
            .map_err(|_| CoreError::KeyFormat("the private key is not valid PKCS#8 DER".into()))?;
        if info.algorithm.oid != RSA_ENCRYPTION_OID {
            return Err(CoreError::KeyFormat(format!(
                "the private key is not an RSA key (algorithm {})",
                info.algorithm.oid
            )));
        }
        let key = PrivateDecryptingKey::from_pkcs8(der).map_err(|e| {
            if e.description_() == "TooSmall" {
                CoreError::KeyFormat(format!("the RSA key is shorter than {MIN_RSA_BITS} bits"))
            } else {
                CoreError::KeyFormat(format!("the RSA private key was rejected ({e})"))
            }
        })?;
        Self::from_private(key)
    }

    /// Parse a private key PEM: PKCS#8 (`PRIVATE KEY`), PBES2-encrypted PKCS#8
    /// (`ENCRYPTED PRIVATE KEY`, needs `password`) or PKCS#1 (`RSA PRIVATE KEY`).
    pub fn from_pem(pem_text: &[u8], password: Option<&[u8]>) -> CoreResult<Self> {
        let _lc = crate::lc_heap::enter();
        let (label, der) = decode_pem(pem_text)?;
        match label.as_str() {
            LABEL_PRIVATE | LABEL_PKCS1_PRIVATE if password.is_some() => {
                Err(CoreError::KeyPassword(
                    "a password was given but the private key is not encrypted".into(),
                ))
            }
            LABEL_PRIVATE => Self::from_pkcs8_der(&der),
            LABEL_PKCS1_PRIVATE => Self::from_pkcs8_der(&wrap_pkcs1_private(&der)?),
            LABEL_ENCRYPTED => {
                let password = password.ok_or_else(|| {
                    CoreError::KeyPassword(
                        "the private key is encrypted: a password is required".into(),
                    )
                })?;
                let plain = decrypt_pkcs8(&der, password)?;
                // A wrong password that happens to leave valid padding yields garbage DER.
                Self::from_pkcs8_der(&plain).map_err(|e| match e {
                    CoreError::KeyFormat(_) if PrivateKeyInfo::from_der(&plain).is_err() => {
                        wrong_password()
                    }
                    other => other,
                })
            }
            other => Err(CoreError::KeyFormat(format!(
                "unsupported PEM type '{other}': expected PRIVATE KEY, ENCRYPTED PRIVATE KEY \
                 or RSA PRIVATE KEY"
            ))),
        }
    }

    /// Load a private key file; refuses files accessible by group or others.
    pub fn load(path: &Path, password: Option<&[u8]>) -> CoreResult<Self> {
        let text = read_private_key_file(path)?;
        Self::from_pem(&text, password)
    }

    /// The private key as PKCS#8 PEM, PBES2-encrypted (PBKDF2-HMAC-SHA256, AES-256-CBC) when a
    /// password is given, in locked memory.
    pub fn private_pem(&self, password: Option<&[u8]>) -> CoreResult<LockedBuf> {
        let _lc = crate::lc_heap::enter();
        if let Some(p) = password {
            check_new_password(p)?;
        }
        let guard = self.private.read().map_err(|_| CoreError::KeyDisposed)?;
        let key = guard.as_ref().ok_or(CoreError::KeyDisposed)?;
        // `Pkcs8V1Der` wipes its buffer on drop.
        let der: Pkcs8V1Der<'static> = key
            .as_der()
            .map_err(|_| CoreError::KeyFormat("the private key could not be encoded".into()))?;
        drop(guard);
        match password {
            None => encode_pem(LABEL_PRIVATE, der.as_ref()),
            Some(p) => encode_pem(LABEL_ENCRYPTED, &encrypt_pkcs8(der.as_ref(), p)?),
        }
    }

    /// Write the private key (mode 0600 from its first byte, atomically) and the public key
    /// (mode 0644, atomically).
    pub fn save(
        &self,
        private_path: &Path,
        public_path: &Path,
        password: Option<&[u8]>,
    ) -> CoreResult<()> {
        if private_path == public_path {
            return Err(CoreError::InvalidArgument(
                "the private and public key paths must differ".into(),
            ));
        }
        let private_pem = self.private_pem(password)?;
        write_atomic(private_path, &private_pem, 0o600)?;
        write_atomic(public_path, self.public.pem.as_bytes(), 0o644)
    }

    /// RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) decryption into `out`; returns the length.
    /// Every failure is the opaque `CoreError::Crypto` (except use after `wipe`).
    pub fn decrypt_oaep(&self, ciphertext: &[u8], out: &mut [u8]) -> CoreResult<usize> {
        let _lc = crate::lc_heap::enter();
        let guard = self.private.read().map_err(|_| CoreError::KeyDisposed)?;
        let key = guard.as_ref().ok_or(CoreError::KeyDisposed)?;
        if ciphertext.len() != key.key_size_bytes() {
            return Err(CoreError::Crypto);
        }
        // `clone` takes a reference on the same EVP_PKEY; nothing is copied.
        let oaep = OaepPrivateDecryptingKey::new(key.clone())?;
        let plain = oaep.decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, out, None)?;
        Ok(plain.len())
    }

    /// Size in bytes of the modulus (and of every OAEP ciphertext for this key).
    pub fn modulus_bytes(&self) -> usize {
        self.public.bits.div_ceil(8)
    }

    /// The public half as a `ServerPublicKey` (for tests and self-encryption).
    pub fn public_key(&self) -> CoreResult<ServerPublicKey> {
        ServerPublicKey::from_spki_der(&self.public.spki_der)
    }

    /// The public key as SubjectPublicKeyInfo PEM.
    pub fn public_key_pem(&self) -> &str {
        &self.public.pem
    }

    /// `sha256:` and the hex SHA-256 of the SubjectPublicKeyInfo DER.
    pub fn fingerprint(&self) -> &str {
        &self.public.fingerprint
    }

    /// The modulus length in bits.
    pub fn bits(&self) -> usize {
        self.public.bits
    }

    /// True once `wipe` freed the private key.
    pub fn is_wiped(&self) -> bool {
        self.private.read().map(|g| g.is_none()).unwrap_or(true)
    }

    /// Free the private key now (aws-lc cleanses its big numbers on free).
    pub fn wipe(&self) {
        let _lc = crate::lc_heap::enter();
        let mut guard = match self.private.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = None;
    }
}

// ---- server public key ---------------------------------------------------------------------

/// A server's RSA public key (>= 2048 bits), used to wrap request keys with RSA-OAEP.
pub struct ServerPublicKey {
    key: OaepPublicEncryptingKey,
    public: PublicInfo,
}

impl std::fmt::Debug for ServerPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerPublicKey")
            .field("bits", &self.public.bits)
            .field("fingerprint", &self.public.fingerprint)
            .finish()
    }
}

impl ServerPublicKey {
    /// Parse SubjectPublicKeyInfo DER holding an RSA key >= 2048 bits.
    pub fn from_spki_der(der: &[u8]) -> CoreResult<Self> {
        let _lc = crate::lc_heap::enter();
        let spki = pkcs8::spki::SubjectPublicKeyInfoRef::from_der(der).map_err(|_| {
            CoreError::KeyFormat("the public key is not valid SubjectPublicKeyInfo DER".into())
        })?;
        if spki.algorithm.oid != RSA_ENCRYPTION_OID {
            return Err(CoreError::KeyFormat(format!(
                "the public key is not an RSA key (algorithm {})",
                spki.algorithm.oid
            )));
        }
        let key = PublicEncryptingKey::from_der(der).map_err(|e| {
            if e.description_() == "TooSmall" {
                CoreError::KeyFormat(format!("the RSA key is shorter than {MIN_RSA_BITS} bits"))
            } else {
                CoreError::KeyFormat(format!("the RSA public key was rejected ({e})"))
            }
        })?;
        let public = PublicInfo::from_key(&key)?;
        let key = OaepPublicEncryptingKey::new(key)
            .map_err(|_| CoreError::KeyFormat("the RSA public key was rejected".into()))?;
        Ok(Self { key, public })
    }

    /// Parse a public key PEM: SPKI (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`).
    pub fn from_pem(pem_text: &[u8]) -> CoreResult<Self> {
        let _lc = crate::lc_heap::enter();
        let (label, der) = decode_pem(pem_text)?;
        match label.as_str() {
            LABEL_PUBLIC => Self::from_spki_der(&der),
            LABEL_PKCS1_PUBLIC => {
                let spki = pkcs8::spki::SubjectPublicKeyInfoRef {
                    algorithm: rsa_algorithm_identifier(),
                    subject_public_key: BitStringRef::from_bytes(&der).map_err(|_| {
                        CoreError::KeyFormat("the RSA public key is malformed".into())
                    })?,
                };
                let spki_der = spki
                    .to_der()
                    .map_err(|_| CoreError::KeyFormat("the RSA public key is malformed".into()))?;
                Self::from_spki_der(&spki_der)
            }
            other => Err(CoreError::KeyFormat(format!(
                "unsupported PEM type '{other}': expected PUBLIC KEY or RSA PUBLIC KEY"
            ))),
        }
    }

    /// RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) encryption of `plaintext` into `out`
    /// (at least `modulus_bytes()` long); returns the ciphertext length.
    pub fn encrypt_oaep(&self, plaintext: &[u8], out: &mut [u8]) -> CoreResult<usize> {
        let _lc = crate::lc_heap::enter();
        let ct = self
            .key
            .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, out, None)?;
        Ok(ct.len())
    }

    /// The modulus length in bytes: the length of every RSA-OAEP ciphertext for this key.
    pub fn modulus_bytes(&self) -> usize {
        self.key.ciphertext_size()
    }

    /// The key as SubjectPublicKeyInfo PEM.
    pub fn pem(&self) -> &str {
        &self.public.pem
    }

    /// `sha256:` and the hex SHA-256 of the SubjectPublicKeyInfo DER.
    pub fn fingerprint(&self) -> &str {
        &self.public.fingerprint
    }

    /// The modulus length in bits.
    pub fn bits(&self) -> usize {
        self.public.bits
    }
}

// ---- PEM and DER helpers -------------------------------------------------------------------

fn rsa_algorithm_identifier() -> AlgorithmIdentifierRef<'static> {
    AlgorithmIdentifierRef {
        oid: RSA_ENCRYPTION_OID,
        parameters: Some(AnyRef::NULL),
    }
}

/// Decode one PEM block into locked memory; returns its label and DER.
fn decode_pem(text: &[u8]) -> CoreResult<(String, LockedBuf)> {
    let text = trim_ascii(text);
    let label = pem::decode_label(text)
        .map_err(|_| CoreError::KeyFormat("the key is not valid PEM".into()))?
        .to_owned();
    // Decode straight into locked memory: base64 never grows the data.
    let mut buf = LockedBuf::zeroed(text.len())?;
    let len = {
        let (_, der) = pem::decode(text, buf.as_mut_slice()).map_err(|e| {
            if matches!(e, pem::Error::HeaderDisallowed) {
                CoreError::KeyFormat(
                    "legacy OpenSSL-encrypted PEM is not supported: convert the key to PKCS#8 \
                     (openssl pkcs8 -topk8)"
                        .into(),
                )
            } else {
                CoreError::KeyFormat("the key is not valid PEM".into())
            }
        })?;
        der.len()
    };
    buf.truncate(len);
    Ok((label, buf))
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end]
}

fn encode_pem(label: &str, der: &[u8]) -> CoreResult<LockedBuf> {
    let bad = |_| CoreError::KeyFormat("the key could not be PEM-encoded".into());
    let len = pem::encapsulated_len(label, LineEnding::LF, der.len()).map_err(bad)?;
    let mut out = LockedBuf::zeroed(len)?;
    let written = pem::encode(label, LineEnding::LF, der, out.as_mut_slice())
        .map_err(bad)?
        .len();
    out.truncate(written);
    Ok(out)
}

/// PKCS#1 `RSAPrivateKey` -> PKCS#8 `PrivateKeyInfo`, in locked memory.
fn wrap_pkcs1_private(pkcs1: &[u8]) -> CoreResult<LockedBuf> {
    let info = PrivateKeyInfo::new(rsa_algorithm_identifier(), pkcs1);
    let bad = |_| CoreError::KeyFormat("the RSA private key is malformed".into());
    let len = usize::try_from(info.encoded_len().map_err(bad)?)
        .map_err(|_| CoreError::KeyFormat("the RSA private key is malformed".into()))?;
    let mut out = LockedBuf::zeroed(len)?;
    info.encode_to_slice(out.as_mut_slice()).map_err(bad)?;
    Ok(out)
}

// ---- PBES2 ---------------------------------------------------------------------------------

fn wrong_password() -> CoreError {
    CoreError::KeyPassword("wrong password for the encrypted private key".into())
}

fn check_new_password(password: &[u8]) -> CoreResult<()> {
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

/// scrypt (RFC 7914) by aws-lc, after our bounds: its tables then live in `lc_heap`.
fn scrypt(n: u64, r: u64, p: u64, salt: &[u8], password: &[u8], kek: &mut [u8]) -> CoreResult<()> {
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
fn derive_kek(kdf: &Kdf<'_>, password: &[u8], kek: &mut [u8]) -> CoreResult<()> {
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
fn decrypt_pkcs8(der: &[u8], password: &[u8]) -> CoreResult<LockedBuf> {
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
fn encrypt_pkcs8(der: &[u8], password: &[u8]) -> CoreResult<Vec<u8>> {
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

// ---- files ---------------------------------------------------------------------------------

#[cfg(windows)]
mod windows;

/// Read a private key file into locked memory after checking its permissions.
fn read_private_key_file(path: &Path) -> CoreResult<LockedBuf> {
    let mut file = open_for_reading(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(CoreError::KeyFormat(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    #[cfg(windows)]
    windows::check_not_shared(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CoreError::KeyPermission(format!(
                "the private key file {} is accessible by group or others (mode {mode:o}); \
                 fix it with: chmod 600 {}",
                path.display(),
                path.display()
            )));
        }
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(CoreError::KeyFormat(format!(
            "{} is too large to be a key file",
            path.display()
        )));
    }
    // Read straight into locked memory; a file that grows meanwhile is cut at its stat size.
    let mut buf = LockedBuf::zeroed(meta.len() as usize)?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf.as_mut_slice()[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Write `contents` to `path` atomically: a temp file in the same directory created with
/// `mode` from its first byte (O_CREAT|O_EXCL), fsync, rename over `path`, fsync the directory.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> CoreResult<()> {
    let file_name = path.file_name().ok_or_else(|| {
        CoreError::InvalidArgument(format!("{} is not a file path", path.display()))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_dir(&dir)?;
    let mut suffix = [0u8; 8];
    rand::fill(&mut suffix).map_err(|_| CoreError::Memory("no randomness".into()))?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{}.{suffix}.tmp", file_name.to_string_lossy()));

    let result = (|| -> CoreResult<()> {
        let mut file = open_exclusive(&tmp, mode)?;
        // The umask may have removed bits from `mode` (never added any): set it exactly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        // Windows has no mode bits: an owner-only file gets an owner-only DACL instead,
        // before anything is written to it.
        #[cfg(windows)]
        if mode & 0o077 == 0 {
            windows::restrict_to_owner(&tmp)?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Open without blocking on a FIFO or device (only regular files are read afterwards).
#[cfg(unix)]
fn open_for_reading(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(not(unix))]
fn open_for_reading(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

#[cfg(unix)]
fn open_exclusive(path: &Path, mode: u32) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(not(unix))]
fn open_exclusive(path: &Path, _mode: u32) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> CoreResult<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> CoreResult<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
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
}
