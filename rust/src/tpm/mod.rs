//! TPM 2.0 structures a server sends with an attestation (PROTOCOL.md section 5), parsed and
//! checked in our own code so that no C unmarshaller ever reads attacker-controlled bytes.
//!
//! `parse` reads `TPM2B_PUBLIC`, `TPM2B_ATTEST` and `TPMT_SIGNATURE` with every length bounded
//! by the TPM 2.0 Library (Part 2) maximum and every byte accounted for; `verify` checks a
//! quote's signature (RSASSA, RSA-PSS, ECDSA over P-256/P-384 with SHA-256/384/512) on aws-lc.
//! Nothing here touches a secret: the inputs are public, so errors name the field and the rule.

pub mod credential;
pub mod parse;
pub mod verify;

/// TPM algorithm identifiers (Part 2, table "TPM_ALG_ID") used by the parser and verifier.
#[forbid(unsafe_code)]
pub mod alg {
    /// `TPM_ALG_RSA`.
    pub const RSA: u16 = 0x0001;
    /// `TPM_ALG_SHA1`.
    pub const SHA1: u16 = 0x0004;
    /// `TPM_ALG_HMAC`.
    pub const HMAC: u16 = 0x0005;
    /// `TPM_ALG_AES`.
    pub const AES: u16 = 0x0006;
    /// `TPM_ALG_MGF1`.
    pub const MGF1: u16 = 0x0007;
    /// `TPM_ALG_KEYEDHASH`.
    pub const KEYEDHASH: u16 = 0x0008;
    /// `TPM_ALG_XOR`.
    pub const XOR: u16 = 0x000A;
    /// `TPM_ALG_SHA256`.
    pub const SHA256: u16 = 0x000B;
    /// `TPM_ALG_SHA384`.
    pub const SHA384: u16 = 0x000C;
    /// `TPM_ALG_SHA512`.
    pub const SHA512: u16 = 0x000D;
    /// `TPM_ALG_NULL`.
    pub const NULL: u16 = 0x0010;
    /// `TPM_ALG_SM3_256`.
    pub const SM3_256: u16 = 0x0012;
    /// `TPM_ALG_SM4`.
    pub const SM4: u16 = 0x0013;
    /// `TPM_ALG_RSASSA`.
    pub const RSASSA: u16 = 0x0014;
    /// `TPM_ALG_RSAES`.
    pub const RSAES: u16 = 0x0015;
    /// `TPM_ALG_RSAPSS`.
    pub const RSAPSS: u16 = 0x0016;
    /// `TPM_ALG_OAEP`.
    pub const OAEP: u16 = 0x0017;
    /// `TPM_ALG_ECDSA`.
    pub const ECDSA: u16 = 0x0018;
    /// `TPM_ALG_ECDH`.
    pub const ECDH: u16 = 0x0019;
    /// `TPM_ALG_ECDAA`.
    pub const ECDAA: u16 = 0x001A;
    /// `TPM_ALG_SM2`.
    pub const SM2: u16 = 0x001B;
    /// `TPM_ALG_ECSCHNORR`.
    pub const ECSCHNORR: u16 = 0x001C;
    /// `TPM_ALG_ECMQV`.
    pub const ECMQV: u16 = 0x001D;
    /// `TPM_ALG_KDF1_SP800_56A`.
    pub const KDF1_SP800_56A: u16 = 0x0020;
    /// `TPM_ALG_KDF1_SP800_108`.
    pub const KDF1_SP800_108: u16 = 0x0022;
    /// `TPM_ALG_ECC`.
    pub const ECC: u16 = 0x0023;
    /// `TPM_ALG_SYMCIPHER`.
    pub const SYMCIPHER: u16 = 0x0025;
    /// `TPM_ALG_CAMELLIA`.
    pub const CAMELLIA: u16 = 0x0026;
    /// `TPM_ALG_SHA3_256`.
    pub const SHA3_256: u16 = 0x0027;
    /// `TPM_ALG_SHA3_384`.
    pub const SHA3_384: u16 = 0x0028;
    /// `TPM_ALG_SHA3_512`.
    pub const SHA3_512: u16 = 0x0029;
    /// `TPM_ALG_CFB`.
    pub const CFB: u16 = 0x0043;
}

/// `TPM_GENERATED_VALUE`: the magic a TPM puts first in every structure it signs.
pub const TPM_GENERATED_VALUE: u32 = 0xFF54_4347;
/// `TPM_ST_ATTEST_CERTIFY`: the `type` of a certify structure.
pub const TPM_ST_ATTEST_CERTIFY: u16 = 0x8017;
/// `TPM_ST_ATTEST_QUOTE`: the `type` of a quote.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ECC_NIST_P256`: the curve identifier of P-256.
pub const TPM_ECC_NIST_P256: u16 = 0x0003;
/// `TPM_ECC_NIST_P384`: the curve identifier of P-384.
pub const TPM_ECC_NIST_P384: u16 = 0x0004;
/// `TPMA_OBJECT` bits that make a key a restricted signer (it refuses to sign data beginning
/// with `TPM_GENERATED_VALUE`, which is what makes a quote's magic meaningful).
pub const ATTR_RESTRICTED: u32 = 0x0001_0000;
/// `TPMA_OBJECT.sign` (`sign`/`encrypt`): the key signs.
pub const ATTR_SIGN_ENCRYPT: u32 = 0x0004_0000;
/// `TPMA_OBJECT.decrypt`: the key decrypts.
pub const ATTR_DECRYPT: u32 = 0x0002_0000;

/// Digest size of a hash algorithm the TPM names, or None for one we do not know.
pub fn digest_size(hash: u16) -> Option<usize> {
    match hash {
        alg::SHA1 => Some(20),
        alg::SHA256 | alg::SM3_256 | alg::SHA3_256 => Some(32),
        alg::SHA384 | alg::SHA3_384 => Some(48),
        alg::SHA512 | alg::SHA3_512 => Some(64),
        _ => None,
    }
}
