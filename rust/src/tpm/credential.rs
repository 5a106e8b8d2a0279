//! `TPM2_MakeCredential` in software (TPM 2.0 Library Part 1, "Credential Protection"): the
//! challenge of an enrollment. The credential is sealed so that only the TPM holding the
//! endorsement key `ek`, and only for the object named `name` (the attestation key), can
//! recover it with `TPM2_ActivateCredential`.
//!
//! seed      random, the size of the EK's nameAlg digest
//! secret    RSA-OAEP(EK, seed, label "IDENTITY\0", hash = EK nameAlg)
//! symKey    KDFa(nameAlg, seed, "STORAGE", name, "", EK's symmetric key bits)
//! encCred   AES-CFB(symKey, IV 0, TPM2B_DIGEST(credential))
//! hmacKey   KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)
//! idObject  TPM2B(TPM2B_DIGEST(HMAC(hmacKey, encCred || name)) || encCred)
//!
//! Only RSA endorsement keys are supported (an ECC EK derives the seed by ECDH).

#![forbid(unsafe_code)]

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::hmac;
use aws_lc_rs::rsa::{
    OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384,
};
use zeroize::Zeroizing;

use super::parse::{FormatError, ParseResult, Public, PublicDetail, MAX_DIGEST};
use super::verify::spki_der;
use super::{alg, digest_size, ATTR_DECRYPT, ATTR_RESTRICTED};

/// What the TPM expects in `TPM2_ActivateCredential`: the marshalled `TPM2B_ID_OBJECT` and
/// `TPM2B_ENCRYPTED_SECRET`.
pub struct Credential {
    /// The marshalled `TPM2B_ID_OBJECT` (integrity HMAC and encrypted credential).
    pub id_object: Vec<u8>,
    /// The marshalled `TPM2B_ENCRYPTED_SECRET` (the seed, RSA-OAEP encrypted to the EK).
    pub encrypted_secret: Vec<u8>,
}

fn refuse<T>(why: impl Into<String>) -> ParseResult<T> {
    Err(FormatError(why.into()))
}

fn crypto_failure<T>(_: aws_lc_rs::error::Unspecified) -> ParseResult<T> {
    refuse("the credential could not be made")
}

fn hmac_alg(name_alg: u16) -> Option<hmac::Algorithm> {
    match name_alg {
        alg::SHA256 => Some(hmac::HMAC_SHA256),
        alg::SHA384 => Some(hmac::HMAC_SHA384),
        _ => None,
    }
}

/// KDFa (Part 1, 11.4.10.2): HMAC counter-mode KDF; `label` without its terminating zero.
pub fn kdfa(
    hash: hmac::Algorithm,
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Zeroizing<Vec<u8>> {
    let key = hmac::Key::new(hash, key);
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Zeroizing::new(Vec::with_capacity(bytes + 64));
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&counter.to_be_bytes());
        ctx.update(label);
        ctx.update(&[0]);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

fn tpm2b(body: &[u8]) -> Vec<u8> {
    // Every body here is bounded far below 64 KiB (digests, an RSA block).
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Seal `credential` for the object `name` under the endorsement key `ek`, with `seed` as the
/// random seed (the caller draws it; tests fix it).
pub fn make_credential_with_seed(
    ek: &Public<'_>,
    name: &[u8],
    credential: &[u8],
    seed: &[u8],
) -> ParseResult<Credential> {
    let PublicDetail::Rsa { symmetric, .. } = &ek.detail else {
        return refuse("the endorsement key is not an RSA key (only RSA EKs are supported)");
    };
    if ek.attributes & ATTR_RESTRICTED == 0 || ek.attributes & ATTR_DECRYPT == 0 {
        return refuse("the endorsement key is not a restricted decryption key");
    }
    let (Some(hash), Some(size)) = (hmac_alg(ek.name_alg), digest_size(ek.name_alg)) else {
        return refuse("the endorsement key's nameAlg is not SHA-256 or SHA-384");
    };
    if symmetric.algorithm != alg::AES || symmetric.mode != alg::CFB {
        return refuse("the endorsement key's symmetric algorithm is not AES-CFB");
    }
    let cipher = match symmetric.key_bits {
        128 => &AES_128,
        256 => &AES_256,
        _ => return refuse("the endorsement key's AES key is neither 128 nor 256 bits"),
    };
    if seed.len() != size {
        return refuse("the seed must be the size of the EK's nameAlg digest");
    }
    let name_ok = name.len() >= 2
        && digest_size(u16::from_be_bytes([name[0], name[1]])) == Some(name.len() - 2);
    if !name_ok {
        return refuse("the object name is not a nameAlg followed by its digest");
    }
    if credential.is_empty() || credential.len() > size.min(MAX_DIGEST) {
        return refuse(format!("the credential must be 1 to {size} bytes"));
    }

    // secret = RSA-OAEP(EK, seed, "IDENTITY\0")
    let public = PublicEncryptingKey::from_der(&spki_der(ek)?)
        .or_else(|_| refuse("the endorsement key is not a usable RSA key"))?;
    let oaep = OaepPublicEncryptingKey::new(public).or_else(crypto_failure)?;
    let oaep_alg = if ek.name_alg == alg::SHA256 {
        &OAEP_SHA256_MGF1SHA256
    } else {
        &OAEP_SHA384_MGF1SHA384
    };
    let mut secret = vec![0u8; oaep.ciphertext_size()];
    let written = oaep
        .encrypt(oaep_alg, seed, &mut secret, Some(b"IDENTITY\0"))
        .or_else(crypto_failure)?
        .len();
    secret.truncate(written);

    // encCred = AES-CFB(KDFa(seed, "STORAGE", name), IV 0, TPM2B_DIGEST(credential))
    let sym_key = kdfa(
        hash,
        seed,
        b"STORAGE",
        name,
        &[],
        u32::from(symmetric.key_bits),
    );
    let key = UnboundCipherKey::new(cipher, &sym_key).or_else(crypto_failure)?;
    let mut enc_cred = Zeroizing::new(tpm2b(credential));
    EncryptingKey::cfb128(key)
        .or_else(crypto_failure)?
        .less_safe_encrypt(&mut enc_cred, EncryptionContext::Iv128([0u8; 16].into()))
        .or_else(crypto_failure)?;

    // outer integrity = HMAC(KDFa(seed, "INTEGRITY"), encCred || name)
    let hmac_key = kdfa(hash, seed, b"INTEGRITY", &[], &[], (size * 8) as u32);
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hash, &hmac_key));
    ctx.update(&enc_cred);
    ctx.update(name);
    let integrity = ctx.sign();

    let mut id_object = tpm2b(integrity.as_ref());
    id_object.extend_from_slice(&enc_cred);
    Ok(Credential {
        id_object: tpm2b(&id_object),
        encrypted_secret: tpm2b(&secret),
    })
}

/// Seal `credential` with a fresh random seed.
pub fn make_credential(ek: &Public<'_>, name: &[u8], credential: &[u8]) -> ParseResult<Credential> {
    let size = digest_size(ek.name_alg).unwrap_or(0);
    let mut seed = Zeroizing::new(vec![0u8; size]);
    aws_lc_rs::rand::fill(&mut seed).or_else(crypto_failure)?;
    make_credential_with_seed(ek, name, credential, &seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_matches_the_spec_layout() {
        // One block: HMAC(key, 00000001 || "STORAGE" 00 || u || v || 00000080).
        let out = kdfa(hmac::HMAC_SHA256, b"k", b"STORAGE", b"u", b"v", 128);
        let mut msg = vec![0, 0, 0, 1];
        msg.extend_from_slice(b"STORAGE\0uv");
        msg.extend_from_slice(&128u32.to_be_bytes());
        let expected = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"k"), &msg);
        assert_eq!(&out[..], &expected.as_ref()[..16]);
        assert_eq!(kdfa(hmac::HMAC_SHA256, b"k", b"X", b"", b"", 520).len(), 65);
    }
}
