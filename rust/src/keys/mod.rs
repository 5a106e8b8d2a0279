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
//! leaves its derived key on the stack unwiped.//!
//! The parts: this module (the two handles and their public halves), `encoding` (PEM and DER
//! framing), `password` (PBES2 encryption of key files, with bounded KDFs) and `files`
//! (reading and writing key files, with their permissions; `windows` for the ACLs there).

mod encoding;
mod files;
mod password;
#[cfg(test)]
mod tests;
#[cfg(windows)]
mod windows;

use std::path::Path;
use std::sync::RwLock;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey, OAEP_SHA256_MGF1SHA256,
};
use pkcs8::der::asn1::BitStringRef;
use pkcs8::der::pem::{self, LineEnding};
use pkcs8::der::{Decode, Encode};
use pkcs8::PrivateKeyInfo;

use crate::error::{CoreError, CoreResult};
use crate::secret::LockedBuf;
use encoding::{
    decode_pem, encode_pem, rsa_algorithm_identifier, wrap_pkcs1_private, RSA_ENCRYPTION_OID,
};
use files::{read_private_key_file, write_atomic};
use password::{check_new_password, decrypt_pkcs8, encrypt_pkcs8, wrong_password};
pub use password::{MAX_SCRYPT_MEMORY, MIN_PASSWORD_CHARS, PBKDF2_ITERATIONS};

/// No shorter RSA key is generated, loaded or accepted from a server.
pub const MIN_RSA_BITS: usize = 2048;
/// Sizes `ClientKeyPair::generate` accepts.
pub const GENERATE_BITS: [usize; 3] = [2048, 3072, 4096];
/// The default client key size (PROTOCOL.md section 6).
pub const DEFAULT_BITS: usize = 4096;

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
