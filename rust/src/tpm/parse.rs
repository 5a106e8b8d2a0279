//! Bounded, panic-free parsers for the TPM 2.0 structures of an attestation block.
//!
//! Every `TPM2B` size is checked against the buffer the TPM 2.0 Library (Part 2) gives it before
//! anything is read, so no allocation or read is sized by the input beyond those maxima; union
//! selectors outside the specification are refused (as the TCG's own `libtss2-mu` does); and a
//! structure must consume its input exactly. The parsed values borrow the input: nothing is
//! copied until the caller asks for it.

#![forbid(unsafe_code)]

use super::{alg, digest_size, TPM_ST_ATTEST_CERTIFY, TPM_ST_ATTEST_QUOTE};
use std::fmt;

/// Buffer sizes of the `TPM2B` types (Part 2, as `libtss2` compiles them).
pub const MAX_DIGEST: usize = 64;
/// `TPM2B_DATA`.
pub const MAX_DATA: usize = 64;
/// `TPM2B_NAME`: a name algorithm and a digest.
pub const MAX_NAME: usize = 68;
/// `TPM2B_PUBLIC_KEY_RSA`: a 4096-bit modulus.
pub const MAX_RSA_KEY_BYTES: usize = 512;
/// `TPM2B_ECC_PARAMETER`.
pub const MAX_ECC_KEY_BYTES: usize = 128;
/// `TPM2B_ATTEST`.
pub const MAX_ATTEST: usize = 2304;
/// `TPM2B_PUBLIC`.
pub const MAX_PUBLIC: usize = 612;
/// PCR banks in a `TPML_PCR_SELECTION`.
pub const MAX_PCR_BANKS: u32 = 16;
/// Bytes of one bank's PCR bitmap.
pub const MAX_PCR_SELECT: u8 = 4;
/// Largest TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET (enrollment structures).
pub const MAX_ID_OBJECT: usize = 66 + 64 + 2;
/// `TPM2B_ENCRYPTED_SECRET`.
pub const MAX_ENCRYPTED_SECRET: usize = 512;

/// A structure that is not what it claims to be; the message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

/// The result of every parser.
pub type ParseResult<T> = Result<T, FormatError>;

fn bad<T>(what: impl Into<String>) -> ParseResult<T> {
    Err(FormatError(what.into()))
}

/// A cursor over big-endian TPM wire bytes; every read is bounds-checked.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    structure: &'static str,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], structure: &'static str) -> Self {
        Reader {
            data,
            pos: 0,
            structure,
        }
    }

    fn take(&mut self, n: usize, field: &str) -> ParseResult<&'a [u8]> {
        match self.data.get(self.pos..).and_then(|rest| rest.get(..n)) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => bad(format!(
                "{} is truncated: {field} needs {n} bytes at offset {}",
                self.structure, self.pos
            )),
        }
    }

    fn u8(&mut self, field: &str) -> ParseResult<u8> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &str) -> ParseResult<u16> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &str) -> ParseResult<u32> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, field: &str) -> ParseResult<u64> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A `TPM2B_*`: a u16 size, at most `max`, then that many bytes.
    fn tpm2b(&mut self, max: usize, field: &str) -> ParseResult<&'a [u8]> {
        let size = self.u16(field)? as usize;
        if size > max {
            return bad(format!(
                "{}: {field} declares {size} bytes, more than its maximum {max}",
                self.structure
            ));
        }
        self.take(size, field)
    }

    fn finish(&self) -> ParseResult<()> {
        let rest = self.data.len() - self.pos;
        if rest != 0 {
            return bad(format!(
                "{} has {rest} trailing bytes after the structure",
                self.structure
            ));
        }
        Ok(())
    }
}

fn unknown<T>(structure: &str, field: &str, value: u16) -> ParseResult<T> {
    bad(format!(
        "{structure}: {field} {value:#06x} is not a known selector"
    ))
}

// ---- TPMT_PUBLIC ------------------------------------------------------------------------------

/// `TPMT_SYM_DEF_OBJECT`: algorithm, and key bits and mode when the algorithm has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymDef {
    /// `TPM_ALG_NULL` or a symmetric algorithm (`TPM_ALG_AES`...).
    pub algorithm: u16,
    /// Key size in bits (0 for NULL or XOR).
    pub key_bits: u16,
    /// Block cipher mode (`TPM_ALG_CFB`...; the hash for XOR).
    pub mode: u16,
}

/// A scheme (`TPMT_RSA_SCHEME`, `TPMT_ECC_SCHEME`, `TPMT_KEYEDHASH_SCHEME`, `TPMT_KDF_SCHEME`):
/// the selector, its hash (0 when the scheme has none), ECDAA's count, XOR's KDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme {
    /// The scheme selector (`TPM_ALG_RSASSA`, `TPM_ALG_ECDSA`, `TPM_ALG_HMAC`, `TPM_ALG_NULL`...).
    pub scheme: u16,
    /// The scheme's hash algorithm.
    pub hash: u16,
    /// ECDAA's commit count.
    pub count: u16,
    /// XOR's key derivation function.
    pub kdf: u16,
}

impl Scheme {
    fn bare(scheme: u16) -> Self {
        Scheme {
            scheme,
            hash: 0,
            count: 0,
            kdf: 0,
        }
    }
}

/// The type-specific parameters and unique field of a `TPMT_PUBLIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicDetail<'a> {
    /// `TPM_ALG_RSA`.
    Rsa {
        /// The storage key's symmetric algorithm (NULL for others).
        symmetric: SymDef,
        /// The signing or decryption scheme.
        scheme: Scheme,
        /// The modulus size in bits.
        key_bits: u16,
        /// The public exponent (0 means 65537).
        exponent: u32,
        /// The modulus, big-endian.
        modulus: &'a [u8],
    },
    /// `TPM_ALG_ECC`.
    Ecc {
        /// The storage key's symmetric algorithm (NULL for others).
        symmetric: SymDef,
        /// The signing or key-exchange scheme.
        scheme: Scheme,
        /// The curve (`TPM_ECC_NIST_P256`...).
        curve: u16,
        /// The key derivation function.
        kdf: Scheme,
        /// The point's x coordinate, big-endian.
        x: &'a [u8],
        /// The point's y coordinate, big-endian.
        y: &'a [u8],
    },
    /// `TPM_ALG_KEYEDHASH`.
    KeyedHash {
        /// The HMAC or XOR scheme.
        scheme: Scheme,
        /// The digest of the sealed data or key.
        unique: &'a [u8],
    },
    /// `TPM_ALG_SYMCIPHER`.
    SymCipher {
        /// The cipher.
        symmetric: SymDef,
        /// The digest of the key.
        unique: &'a [u8],
    },
}

/// A `TPMT_PUBLIC` (the public area), with its own marshalled bytes (hashed for its Name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public<'a> {
    /// The whole marshalled `TPMT_PUBLIC` (what the Name hashes).
    pub area: &'a [u8],
    /// `type`: `TPM_ALG_RSA`, `TPM_ALG_ECC`...
    pub key_type: u16,
    /// `nameAlg`: the hash of the object's Name.
    pub name_alg: u16,
    /// `objectAttributes` (`TPMA_OBJECT` bits).
    pub attributes: u32,
    /// `authPolicy`: the policy digest (empty when none).
    pub auth_policy: &'a [u8],
    /// The type's parameters and unique field.
    pub detail: PublicDetail<'a>,
}

const PUB: &str = "TPMT_PUBLIC";

fn sym_def(r: &mut Reader<'_>) -> ParseResult<SymDef> {
    let algorithm = r.u16("symmetric.algorithm")?;
    let (key_bits, mode) = match algorithm {
        alg::AES | alg::SM4 | alg::CAMELLIA | alg::SYMCIPHER => {
            (r.u16("symmetric.keyBits")?, r.u16("symmetric.mode")?)
        }
        alg::XOR => (r.u16("symmetric.keyBits")?, 0),
        alg::NULL => (0, 0),
        other => return unknown(r.structure, "symmetric.algorithm", other),
    };
    Ok(SymDef {
        algorithm,
        key_bits,
        mode,
    })
}

/// `TPMT_RSA_SCHEME` and `TPMT_ECC_SCHEME` share the selectors of `TPMU_ASYM_SCHEME`.
fn asym_scheme(r: &mut Reader<'_>) -> ParseResult<Scheme> {
    let scheme = r.u16("scheme.scheme")?;
    let mut out = Scheme::bare(scheme);
    match scheme {
        alg::RSASSA
        | alg::RSAPSS
        | alg::OAEP
        | alg::ECDSA
        | alg::ECDH
        | alg::SM2
        | alg::ECSCHNORR
        | alg::ECMQV => out.hash = r.u16("scheme.hashAlg")?,
        alg::ECDAA => {
            out.hash = r.u16("scheme.hashAlg")?;
            out.count = r.u16("scheme.count")?;
        }
        alg::RSAES | alg::NULL => {}
        other => return unknown(r.structure, "scheme.scheme", other),
    }
    Ok(out)
}

fn kdf_scheme(r: &mut Reader<'_>) -> ParseResult<Scheme> {
    let scheme = r.u16("kdf.scheme")?;
    let mut out = Scheme::bare(scheme);
    match scheme {
        alg::MGF1 | alg::KDF1_SP800_56A | alg::KDF1_SP800_108 => out.hash = r.u16("kdf.hashAlg")?,
        alg::NULL => {}
        other => return unknown(r.structure, "kdf.scheme", other),
    }
    Ok(out)
}

fn keyedhash_scheme(r: &mut Reader<'_>) -> ParseResult<Scheme> {
    let scheme = r.u16("scheme.scheme")?;
    let mut out = Scheme::bare(scheme);
    match scheme {
        alg::HMAC => out.hash = r.u16("scheme.hashAlg")?,
        alg::XOR => {
            out.hash = r.u16("scheme.hashAlg")?;
            out.kdf = r.u16("scheme.kdf")?;
        }
        alg::NULL => {}
        other => return unknown(r.structure, "scheme.scheme", other),
    }
    Ok(out)
}

fn public_area<'a>(r: &mut Reader<'a>) -> ParseResult<Public<'a>> {
    let start = r.pos;
    let key_type = r.u16("type")?;
    let name_alg = r.u16("nameAlg")?;
    let attributes = r.u32("objectAttributes")?;
    let auth_policy = r.tpm2b(MAX_DIGEST, "authPolicy")?;
    let detail = match key_type {
        alg::RSA => {
            let symmetric = sym_def(r)?;
            let scheme = asym_scheme(r)?;
            let key_bits = r.u16("keyBits")?;
            let exponent = r.u32("exponent")?;
            let modulus = r.tpm2b(MAX_RSA_KEY_BYTES, "unique.rsa")?;
            PublicDetail::Rsa {
                symmetric,
                scheme,
                key_bits,
                exponent,
                modulus,
            }
        }
        alg::ECC => {
            let symmetric = sym_def(r)?;
            let scheme = asym_scheme(r)?;
            let curve = r.u16("curveID")?;
            let kdf = kdf_scheme(r)?;
            let x = r.tpm2b(MAX_ECC_KEY_BYTES, "unique.ecc.x")?;
            let y = r.tpm2b(MAX_ECC_KEY_BYTES, "unique.ecc.y")?;
            PublicDetail::Ecc {
                symmetric,
                scheme,
                curve,
                kdf,
                x,
                y,
            }
        }
        alg::KEYEDHASH => {
            let scheme = keyedhash_scheme(r)?;
            let unique = r.tpm2b(MAX_DIGEST, "unique.keyedHash")?;
            PublicDetail::KeyedHash { scheme, unique }
        }
        alg::SYMCIPHER => {
            let symmetric = sym_def(r)?;
            let unique = r.tpm2b(MAX_DIGEST, "unique.sym")?;
            PublicDetail::SymCipher { symmetric, unique }
        }
        other => return unknown(PUB, "type", other),
    };
    Ok(Public {
        area: &r.data[start..r.pos],
        key_type,
        name_alg,
        attributes,
        auth_policy,
        detail,
    })
}

/// Parse a marshalled `TPM2B_PUBLIC` (u16 size, then a `TPMT_PUBLIC` of exactly that size).
pub fn parse_public(data: &[u8]) -> ParseResult<Public<'_>> {
    let mut outer = Reader::new(data, "TPM2B_PUBLIC");
    let inner = outer.tpm2b(MAX_PUBLIC, "publicArea")?;
    outer.finish()?;
    if inner.is_empty() {
        return bad("TPM2B_PUBLIC is empty");
    }
    let mut r = Reader::new(inner, PUB);
    let public = public_area(&mut r)?;
    r.finish()?;
    Ok(public)
}

/// Parse a bare `TPMT_PUBLIC` (as in a TPM Name computation or a pin file).
pub fn parse_public_area(data: &[u8]) -> ParseResult<Public<'_>> {
    if data.len() > MAX_PUBLIC {
        return bad("TPMT_PUBLIC is longer than its maximum size");
    }
    let mut r = Reader::new(data, PUB);
    let public = public_area(&mut r)?;
    r.finish()?;
    Ok(public)
}

// ---- TPMS_ATTEST ------------------------------------------------------------------------------

/// One `TPMS_PCR_SELECTION`: a bank and its bitmap (bit b of byte n selects PCR 8n + b).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcrSelection<'a> {
    /// The bank's hash algorithm.
    pub hash: u16,
    /// The bitmap of selected PCRs.
    pub select: &'a [u8],
}

/// The `attested` member of a `TPMS_ATTEST`, for the two types we verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attested<'a> {
    /// `TPM_ST_ATTEST_QUOTE`: the PCRs quoted and their digest.
    Quote {
        /// `pcrSelect`: the banks and PCRs quoted.
        selections: Vec<PcrSelection<'a>>,
        /// `pcrDigest`: the hash of the selected PCRs' values.
        pcr_digest: &'a [u8],
    },
    /// `TPM_ST_ATTEST_CERTIFY`: the certified object's names.
    Certify {
        /// `name`: the certified object's Name.
        name: &'a [u8],
        /// `qualifiedName`: its Name qualified by its parents'.
        qualified_name: &'a [u8],
    },
}

/// A `TPMS_ATTEST`, with the exact bytes the TPM signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest<'a> {
    /// The marshalled `TPMS_ATTEST`: the bytes the signature covers.
    pub signed: &'a [u8],
    /// `magic`: `TPM_GENERATED_VALUE` for a structure the TPM made.
    pub magic: u32,
    /// `type`: `TPM_ST_ATTEST_QUOTE` or `TPM_ST_ATTEST_CERTIFY`.
    pub attest_type: u16,
    /// `qualifiedSigner`: the signing key's qualified Name.
    pub qualified_signer: &'a [u8],
    /// `extraData`: the caller's nonce.
    pub extra_data: &'a [u8],
    /// `clockInfo.clock`: milliseconds the TPM has been powered.
    pub clock: u64,
    /// `clockInfo.resetCount`: TPM resets since it was cleared.
    pub reset_count: u32,
    /// `clockInfo.restartCount`: restarts and resumes since the last reset.
    pub restart_count: u32,
    /// `clockInfo.safe`: 1 when the clock was not rolled back.
    pub safe: u8,
    /// `firmwareVersion`.
    pub firmware_version: u64,
    /// The type-specific part.
    pub attested: Attested<'a>,
}

const ATT: &str = "TPMS_ATTEST";

/// Parse a marshalled `TPM2B_ATTEST` whose content is a quote or a certify structure. Other
/// attestation types (audit, time, creation, NV) are refused: nothing here verifies them.
pub fn parse_attest(data: &[u8]) -> ParseResult<Attest<'_>> {
    let mut outer = Reader::new(data, "TPM2B_ATTEST");
    let signed = outer.tpm2b(MAX_ATTEST, "attestationData")?;
    outer.finish()?;
    if signed.is_empty() {
        return bad("TPM2B_ATTEST is empty");
    }
    let mut r = Reader::new(signed, ATT);
    let magic = r.u32("magic")?;
    let attest_type = r.u16("type")?;
    let qualified_signer = r.tpm2b(MAX_NAME, "qualifiedSigner")?;
    let extra_data = r.tpm2b(MAX_DATA, "extraData")?;
    let clock = r.u64("clockInfo.clock")?;
    let reset_count = r.u32("clockInfo.resetCount")?;
    let restart_count = r.u32("clockInfo.restartCount")?;
    let safe = r.u8("clockInfo.safe")?;
    let firmware_version = r.u64("firmwareVersion")?;
    let attested = match attest_type {
        TPM_ST_ATTEST_QUOTE => {
            let count = r.u32("pcrSelect.count")?;
            if count > MAX_PCR_BANKS {
                return bad(format!(
                    "{ATT}: pcrSelect.count {count} exceeds the maximum {MAX_PCR_BANKS}"
                ));
            }
            let mut selections = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let hash = r.u16("pcrSelections.hash")?;
                let size = r.u8("pcrSelections.sizeofSelect")?;
                if size > MAX_PCR_SELECT {
                    return bad(format!(
                        "{ATT}: sizeofSelect {size} exceeds the maximum {MAX_PCR_SELECT}"
                    ));
                }
                let select = r.take(size as usize, "pcrSelections.pcrSelect")?;
                selections.push(PcrSelection { hash, select });
            }
            let pcr_digest = r.tpm2b(MAX_DIGEST, "pcrDigest")?;
            Attested::Quote {
                selections,
                pcr_digest,
            }
        }
        TPM_ST_ATTEST_CERTIFY => Attested::Certify {
            name: r.tpm2b(MAX_NAME, "certify.name")?,
            qualified_name: r.tpm2b(MAX_NAME, "certify.qualifiedName")?,
        },
        other => {
            return bad(format!(
                "{ATT}: type {other:#06x} is neither a quote nor a certify structure"
            ))
        }
    };
    r.finish()?;
    Ok(Attest {
        signed,
        magic,
        attest_type,
        qualified_signer,
        extra_data,
        clock,
        reset_count,
        restart_count,
        safe,
        firmware_version,
        attested,
    })
}

// ---- TPMT_SIGNATURE ---------------------------------------------------------------------------

/// A `TPMT_SIGNATURE`, by the shape of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature<'a> {
    /// RSASSA or RSAPSS: hash and the signature integer (big-endian, modulus-sized).
    Rsa {
        /// `TPM_ALG_RSASSA` or `TPM_ALG_RSAPSS`.
        sig_alg: u16,
        /// The hash signed.
        hash: u16,
        /// The signature integer.
        sig: &'a [u8],
    },
    /// ECDSA, ECDAA, SM2, ECSCHNORR: hash and (r, s).
    Ecc {
        /// `TPM_ALG_ECDSA`, `TPM_ALG_ECDAA`, `TPM_ALG_SM2` or `TPM_ALG_ECSCHNORR`.
        sig_alg: u16,
        /// The hash signed.
        hash: u16,
        /// The signature's r, big-endian.
        r: &'a [u8],
        /// The signature's s, big-endian.
        s: &'a [u8],
    },
    /// HMAC: a `TPMT_HA`.
    Hmac {
        /// The HMAC's hash algorithm.
        hash: u16,
        /// The HMAC.
        digest: &'a [u8],
    },
    /// `TPM_ALG_NULL`: no signature.
    Null,
}

impl Signature<'_> {
    /// The signature algorithm (`sigAlg`).
    pub fn sig_alg(&self) -> u16 {
        match self {
            Signature::Rsa { sig_alg, .. } | Signature::Ecc { sig_alg, .. } => *sig_alg,
            Signature::Hmac { .. } => alg::HMAC,
            Signature::Null => alg::NULL,
        }
    }
}

const SIG: &str = "TPMT_SIGNATURE";

/// Parse a marshalled `TPMT_SIGNATURE`.
pub fn parse_signature(data: &[u8]) -> ParseResult<Signature<'_>> {
    let mut r = Reader::new(data, SIG);
    let sig_alg = r.u16("sigAlg")?;
    let sig = match sig_alg {
        alg::RSASSA | alg::RSAPSS => Signature::Rsa {
            sig_alg,
            hash: r.u16("hash")?,
            sig: r.tpm2b(MAX_RSA_KEY_BYTES, "sig")?,
        },
        alg::ECDSA | alg::ECDAA | alg::SM2 | alg::ECSCHNORR => Signature::Ecc {
            sig_alg,
            hash: r.u16("hash")?,
            r: r.tpm2b(MAX_ECC_KEY_BYTES, "signatureR")?,
            s: r.tpm2b(MAX_ECC_KEY_BYTES, "signatureS")?,
        },
        alg::HMAC => {
            let hash = r.u16("hmac.hashAlg")?;
            let size = match digest_size(hash) {
                Some(size) => size,
                None => return unknown(SIG, "hmac.hashAlg", hash),
            };
            Signature::Hmac {
                hash,
                digest: r.take(size, "hmac.digest")?,
            }
        }
        alg::NULL => Signature::Null,
        other => return unknown(SIG, "sigAlg", other),
    };
    r.finish()?;
    Ok(sig)
}

// ---- enrollment structures --------------------------------------------------------------------

/// A bare `TPM2B` of at most `max` bytes, consuming `data` exactly (`TPM2B_DIGEST`,
/// `TPM2B_ID_OBJECT`, `TPM2B_ENCRYPTED_SECRET`...).
pub fn parse_tpm2b<'a>(
    data: &'a [u8],
    max: usize,
    structure: &'static str,
) -> ParseResult<&'a [u8]> {
    let mut r = Reader::new(data, structure);
    let body = r.tpm2b(max, "buffer")?;
    r.finish()?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ecc_public(attrs: u32) -> Vec<u8> {
        let mut area = Vec::new();
        area.extend_from_slice(&alg::ECC.to_be_bytes());
        area.extend_from_slice(&alg::SHA256.to_be_bytes());
        area.extend_from_slice(&attrs.to_be_bytes());
        area.extend_from_slice(&0u16.to_be_bytes()); // authPolicy
        area.extend_from_slice(&alg::NULL.to_be_bytes()); // symmetric
        area.extend_from_slice(&alg::ECDSA.to_be_bytes());
        area.extend_from_slice(&alg::SHA256.to_be_bytes());
        area.extend_from_slice(&super::super::TPM_ECC_NIST_P256.to_be_bytes());
        area.extend_from_slice(&alg::NULL.to_be_bytes()); // kdf
        for _ in 0..2 {
            area.extend_from_slice(&32u16.to_be_bytes());
            area.extend_from_slice(&[7u8; 32]);
        }
        let mut out = (area.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&area);
        out
    }

    #[test]
    fn public_round_trip_fields() {
        let raw = ecc_public(0x0005_0072);
        let p = parse_public(&raw).unwrap();
        assert_eq!(p.key_type, alg::ECC);
        assert_eq!(p.area, &raw[2..]);
        match p.detail {
            PublicDetail::Ecc { curve, x, .. } => {
                assert_eq!(curve, 3);
                assert_eq!(x, &[7u8; 32]);
            }
            _ => panic!("not ECC"),
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let raw = ecc_public(0);
        for n in 0..raw.len() {
            assert!(parse_public(&raw[..n]).is_err(), "prefix {n} accepted");
        }
        let mut longer = raw.clone();
        longer.push(0);
        assert!(parse_public(&longer).is_err());
    }

    #[test]
    fn oversized_tpm2b_is_refused_before_reading() {
        let mut raw = vec![0xFF, 0xFF];
        raw.extend_from_slice(&[0u8; 10]);
        let err = parse_public(&raw).unwrap_err();
        assert!(err.0.contains("maximum"), "{err}");
        // A quote claiming 17 PCR banks.
        let mut att = Vec::new();
        att.extend_from_slice(&super::super::TPM_GENERATED_VALUE.to_be_bytes());
        att.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
        att.extend_from_slice(&[0u8; 4]); // two empty TPM2Bs
        att.extend_from_slice(&[0u8; 17 + 8]);
        att.extend_from_slice(&17u32.to_be_bytes());
        let mut wrapped = (att.len() as u16).to_be_bytes().to_vec();
        wrapped.extend_from_slice(&att);
        assert!(parse_attest(&wrapped).unwrap_err().0.contains("count"));
    }

    #[test]
    fn unknown_selectors_are_refused() {
        assert!(parse_signature(&[0x00, 0x99, 0x00, 0x0b]).is_err());
        assert_eq!(parse_signature(&[0x00, 0x10]).unwrap(), Signature::Null);
        let mut raw = ecc_public(0);
        raw[2] = 0x00;
        raw[3] = 0x77; // type
        assert!(parse_public(&raw).is_err());
    }
}
