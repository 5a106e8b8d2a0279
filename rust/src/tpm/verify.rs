//! Signature checks for TPM-signed structures on aws-lc, and the AIK's SubjectPublicKeyInfo.
//!
//! RSASSA-PKCS1-v1_5 and ECDSA go through aws-lc-rs. RSA-PSS goes through aws-lc-sys, because
//! aws-lc-rs fixes the salt to the digest length while a TPM may use the maximum salt
//! (TPM 2.0 Library Part 1, "RSASSA-PSS"): both lengths are accepted, and nothing else.

use super::parse::{FormatError, ParseResult, Public, PublicDetail, Signature};
use super::{alg, ATTR_RESTRICTED, ATTR_SIGN_ENCRYPT, TPM_ECC_NIST_P256, TPM_ECC_NIST_P384};
use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};

/// Smallest RSA attestation key accepted (as for the server's envelope key).
pub const MIN_RSA_BITS: usize = 2048;
const DEFAULT_RSA_EXPONENT: u32 = 65537;

fn refuse<T>(why: impl Into<String>) -> ParseResult<T> {
    Err(FormatError(why.into()))
}

fn hash_name(hash: u16) -> Option<&'static str> {
    match hash {
        alg::SHA256 => Some("SHA256"),
        alg::SHA384 => Some("SHA384"),
        alg::SHA512 => Some("SHA512"),
        _ => None,
    }
}

fn curve_size(curve: u16) -> Option<(usize, &'static str)> {
    match curve {
        TPM_ECC_NIST_P256 => Some((32, "P-256")),
        TPM_ECC_NIST_P384 => Some((48, "P-384")),
        _ => None,
    }
}

/// The RSA modulus without leading zero bytes, refused unless it has exactly the bits the key
/// declares and at least MIN_RSA_BITS.
fn rsa_modulus(key_bits: u16, modulus: &[u8]) -> ParseResult<&[u8]> {
    let bits = modulus.len() * 8;
    if bits < MIN_RSA_BITS || bits != key_bits as usize || modulus.first().is_none_or(|b| *b < 0x80)
    {
        return refuse(format!(
            "AIK RSA key has {bits} bits of modulus for keyBits {key_bits} (need a full modulus of >= {MIN_RSA_BITS} bits)"
        ));
    }
    Ok(modulus)
}

fn exponent_bytes(exponent: u32) -> Vec<u8> {
    let e = if exponent == 0 {
        DEFAULT_RSA_EXPONENT
    } else {
        exponent
    };
    let raw = e.to_be_bytes();
    let skip = raw.iter().take_while(|b| **b == 0).count();
    raw[skip..].to_vec()
}

/// `04 || x || y`, each coordinate left-padded to the field size; refused when longer.
fn ec_point(curve: u16, x: &[u8], y: &[u8]) -> ParseResult<(Vec<u8>, &'static str)> {
    let Some((size, label)) = curve_size(curve) else {
        return refuse(format!("AIK curve {curve:#06x} is not NIST P-256 or P-384"));
    };
    if x.len() > size || y.len() > size {
        return refuse(format!(
            "AIK point coordinates are longer than {label} allows"
        ));
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    for coord in [x, y] {
        point.resize(point.len() + size - coord.len(), 0);
        point.extend_from_slice(coord);
    }
    Ok((point, label))
}

// ---- DER (only what a SubjectPublicKeyInfo and an ECDSA signature need) ----------------------

fn der_tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(body);
    out
}

/// A non-negative DER INTEGER from big-endian magnitude bytes.
fn der_uint(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let digits = &magnitude[skip..];
    let mut body = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|b| *b >= 0x80) {
        body.push(0);
    }
    body.extend_from_slice(digits);
    der_tlv(0x02, &body)
}

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// The DER SubjectPublicKeyInfo of an RSA (>= 2048 bits) or P-256/P-384 public area, as
/// OpenSSL and pyca/cryptography write it: what a PEM-pinned AIK is compared with.
pub fn spki_der(public: &Public<'_>) -> ParseResult<Vec<u8>> {
    let (algorithm, key) = match &public.detail {
        PublicDetail::Rsa {
            key_bits,
            exponent,
            modulus,
            ..
        } => {
            let n = rsa_modulus(*key_bits, modulus)?;
            let mut seq = der_uint(n);
            seq.extend_from_slice(&der_uint(&exponent_bytes(*exponent)));
            let mut alg_id = der_tlv(0x06, OID_RSA_ENCRYPTION);
            alg_id.extend_from_slice(&[0x05, 0x00]);
            (alg_id, der_tlv(0x30, &seq))
        }
        PublicDetail::Ecc { curve, x, y, .. } => {
            let (point, _) = ec_point(*curve, x, y)?;
            let mut alg_id = der_tlv(0x06, OID_EC_PUBLIC_KEY);
            let curve_oid = if *curve == TPM_ECC_NIST_P256 {
                OID_P256
            } else {
                OID_P384
            };
            alg_id.extend_from_slice(&der_tlv(0x06, curve_oid));
            (alg_id, point)
        }
        _ => return refuse("AIK key type is neither RSA nor ECC"),
    };
    let mut bits = vec![0u8];
    bits.extend_from_slice(&key);
    let mut body = der_tlv(0x30, &algorithm);
    body.extend_from_slice(&der_tlv(0x03, &bits));
    Ok(der_tlv(0x30, &body))
}

// ---- verification ----------------------------------------------------------------------------

/// The (scheme, hash) fixed in a key's public area, or None when the key leaves it open.
fn key_scheme(public: &Public<'_>) -> Option<(u16, u16)> {
    let scheme = match &public.detail {
        PublicDetail::Rsa { scheme, .. } | PublicDetail::Ecc { scheme, .. } => scheme,
        _ => return None,
    };
    (scheme.scheme != alg::NULL).then_some((scheme.scheme, scheme.hash))
}

/// Verify a TPM signature by an attestation key over `message` (a `TPMS_ATTEST`). The key must
/// be a restricted signing key; the scheme and hash must be RSASSA, RSAPSS or ECDSA with
/// SHA-256/384/512 and agree with any scheme fixed in the key. Returns a description of what
/// verified; refuses with the reason.
pub fn verify_quote_signature(
    public: &Public<'_>,
    signature: &Signature<'_>,
    message: &[u8],
) -> ParseResult<String> {
    let attrs = public.attributes;
    if attrs & ATTR_SIGN_ENCRYPT == 0 || attrs & ATTR_RESTRICTED == 0 {
        return refuse("AIK is not a restricted signing key");
    }
    let (scheme, hash) = match signature {
        Signature::Rsa { sig_alg, hash, .. } | Signature::Ecc { sig_alg, hash, .. }
            if matches!(*sig_alg, alg::RSASSA | alg::RSAPSS | alg::ECDSA) =>
        {
            (*sig_alg, *hash)
        }
        other => {
            return refuse(format!(
                "signature scheme {:#06x} is not RSASSA, RSAPSS or ECDSA",
                other.sig_alg()
            ))
        }
    };
    let Some(hname) = hash_name(hash) else {
        return refuse(format!(
            "signature hash {hash:#06x} is not SHA-256, SHA-384 or SHA-512"
        ));
    };
    if let Some(fixed) = key_scheme(public) {
        if fixed != (scheme, hash) {
            return refuse("signature scheme differs from the AIK's fixed scheme");
        }
    }
    let label = match (&public.detail, signature) {
        (
            PublicDetail::Rsa {
                key_bits,
                exponent,
                modulus,
                ..
            },
            Signature::Rsa { sig, .. },
        ) => {
            let n = rsa_modulus(*key_bits, modulus)?;
            if sig.len() != n.len() {
                return refuse("RSA signature length does not match the AIK modulus");
            }
            let e = exponent_bytes(*exponent);
            let ok = if scheme == alg::RSAPSS {
                rsa_pss_verify(n, &e, hash, message, sig)
            } else {
                let params = match hash {
                    alg::SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                    alg::SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                    _ => &sig::RSA_PKCS1_2048_8192_SHA512,
                };
                sig::RsaPublicKeyComponents { n, e: &e[..] }
                    .verify(params, message, sig)
                    .is_ok()
            };
            if !ok {
                return refuse("signature does not verify over the quote with the AIK");
            }
            format!("RSA-{} AIK", n.len() * 8)
        }
        (PublicDetail::Ecc { curve, x, y, .. }, Signature::Ecc { r, s, .. }) => {
            let (point, label) = ec_point(*curve, x, y)?;
            let size = point.len() / 2;
            if r.len() > size || s.len() > size {
                return refuse("ECDSA signature values are longer than the curve allows");
            }
            let algorithm: &dyn VerificationAlgorithm = match (*curve, hash) {
                (TPM_ECC_NIST_P256, alg::SHA256) => &sig::ECDSA_P256_SHA256_ASN1,
                (TPM_ECC_NIST_P256, alg::SHA384) => &sig::ECDSA_P256_SHA384_ASN1,
                (TPM_ECC_NIST_P256, _) => &sig::ECDSA_P256_SHA512_ASN1,
                (_, alg::SHA256) => &sig::ECDSA_P384_SHA256_ASN1,
                (_, alg::SHA384) => &sig::ECDSA_P384_SHA384_ASN1,
                _ => &sig::ECDSA_P384_SHA512_ASN1,
            };
            let mut rs = der_uint(r);
            rs.extend_from_slice(&der_uint(s));
            let der = der_tlv(0x30, &rs);
            if UnparsedPublicKey::new(algorithm, &point)
                .verify(message, &der)
                .is_err()
            {
                return refuse("signature does not verify over the quote with the AIK");
            }
            format!("{label} AIK")
        }
        (PublicDetail::Rsa { .. }, _) => {
            return refuse("ECDSA signature but the AIK is not an ECC key")
        }
        (PublicDetail::Ecc { .. }, _) => {
            return refuse("RSA signature but the AIK is not an RSA key")
        }
        _ => return refuse("AIK key type is neither RSA nor ECC"),
    };
    let scheme_name = match scheme {
        alg::RSASSA => "RSASSA-PKCS1v1.5",
        alg::RSAPSS => "RSA-PSS",
        _ => "ECDSA",
    };
    Ok(format!("{scheme_name}-{hname} by {label} verifies"))
}

/// RSASSA-PSS with MGF1 over `hash`, accepting a salt of the digest length or the maximum.
fn rsa_pss_verify(n: &[u8], e: &[u8], hash: u16, message: &[u8], signature: &[u8]) -> bool {
    use aws_lc_rs::digest;
    use aws_lc_sys as lc;

    let (digest_alg, hash_len) = match hash {
        alg::SHA256 => (&digest::SHA256, 32usize),
        alg::SHA384 => (&digest::SHA384, 48),
        _ => (&digest::SHA512, 64),
    };
    let digest = digest::digest(digest_alg, message);
    // emLen = ceil((modBits - 1) / 8); the modulus is full-length (checked), so modBits = 8 len.
    let em_len = (n.len() * 8 - 1).div_ceil(8);
    let Some(max_salt) = em_len.checked_sub(hash_len + 2) else {
        return false;
    };
    let Ok(max_salt) = i32::try_from(max_salt) else {
        return false;
    };
    // SAFETY: every pointer passed is either null-checked here or borrowed from a live slice
    // for the duration of the call; the RSA and BIGNUMs are freed on every path.
    unsafe {
        let md = match hash {
            alg::SHA256 => lc::EVP_sha256(),
            alg::SHA384 => lc::EVP_sha384(),
            _ => lc::EVP_sha512(),
        };
        let bn_n = lc::BN_bin2bn(n.as_ptr(), n.len(), std::ptr::null_mut());
        let bn_e = lc::BN_bin2bn(e.as_ptr(), e.len(), std::ptr::null_mut());
        let rsa = if bn_n.is_null() || bn_e.is_null() {
            std::ptr::null_mut()
        } else {
            lc::RSA_new_public_key(bn_n, bn_e)
        };
        lc::BN_free(bn_n);
        lc::BN_free(bn_e);
        if rsa.is_null() {
            lc::ERR_clear_error();
            return false;
        }
        let mut ok = false;
        for salt in [hash_len as i32, max_salt] {
            let verified = lc::RSA_verify_pss_mgf1(
                rsa,
                digest.as_ref().as_ptr(),
                digest.as_ref().len(),
                md,
                std::ptr::null(),
                salt,
                signature.as_ptr(),
                signature.len(),
            );
            if verified == 1 {
                ok = true;
                break;
            }
        }
        lc::RSA_free(rsa);
        lc::ERR_clear_error();
        ok
    }
}

/// Verify an X.509 certificate signature (an EK certificate chain): `algorithm` names the
/// signature algorithm, `public_key` is the issuer's key as a PKCS#1 RSAPublicKey (RSA, >= 2048
/// bits) or an uncompressed point (P-256/P-384).
pub fn verify_certificate_signature(
    algorithm: &str,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> ParseResult<bool> {
    let alg: &dyn VerificationAlgorithm = match algorithm {
        "rsa-pkcs1-sha256" => &sig::RSA_PKCS1_2048_8192_SHA256,
        "rsa-pkcs1-sha384" => &sig::RSA_PKCS1_2048_8192_SHA384,
        "rsa-pkcs1-sha512" => &sig::RSA_PKCS1_2048_8192_SHA512,
        "ecdsa-p256-sha256" => &sig::ECDSA_P256_SHA256_ASN1,
        "ecdsa-p256-sha384" => &sig::ECDSA_P256_SHA384_ASN1,
        "ecdsa-p384-sha256" => &sig::ECDSA_P384_SHA256_ASN1,
        "ecdsa-p384-sha384" => &sig::ECDSA_P384_SHA384_ASN1,
        other => {
            return refuse(format!(
                "certificate signature algorithm {other} is not supported"
            ))
        }
    };
    Ok(UnparsedPublicKey::new(alg, public_key)
        .verify(message, signature)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_uint_adds_sign_byte_and_strips_zeros() {
        assert_eq!(der_uint(&[0x00, 0x00, 0x7f]), vec![0x02, 0x01, 0x7f]);
        assert_eq!(der_uint(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_uint(&[]), vec![0x02, 0x01, 0x00]);
    }

    #[test]
    fn der_tlv_long_lengths() {
        assert_eq!(&der_tlv(0x04, &[0u8; 200])[..3], &[0x04, 0x81, 200]);
        assert_eq!(&der_tlv(0x04, &[0u8; 300])[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }
}
