//! PEM and DER framing of key files: decoding into locked memory, encoding, PKCS#1 wrapped
//! as PKCS#8.

#![forbid(unsafe_code)]

use pkcs8::der::asn1::{AnyRef, ObjectIdentifier};
use pkcs8::der::pem::{self, LineEnding};
use pkcs8::der::Encode;
use pkcs8::{AlgorithmIdentifierRef, PrivateKeyInfo};

use crate::error::{CoreError, CoreResult};
use crate::secret::LockedBuf;

pub(super) fn rsa_algorithm_identifier() -> AlgorithmIdentifierRef<'static> {
    AlgorithmIdentifierRef {
        oid: RSA_ENCRYPTION_OID,
        parameters: Some(AnyRef::NULL),
    }
}

/// `rsaEncryption` (PKCS#1), the algorithm of every RSA key file.
pub(super) const RSA_ENCRYPTION_OID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Decode one PEM block into locked memory; returns its label and DER.
pub(super) fn decode_pem(text: &[u8]) -> CoreResult<(String, LockedBuf)> {
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

pub(super) fn trim_ascii(b: &[u8]) -> &[u8] {
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

pub(super) fn encode_pem(label: &str, der: &[u8]) -> CoreResult<LockedBuf> {
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
pub(super) fn wrap_pkcs1_private(pkcs1: &[u8]) -> CoreResult<LockedBuf> {
    let info = PrivateKeyInfo::new(rsa_algorithm_identifier(), pkcs1);
    let bad = |_| CoreError::KeyFormat("the RSA private key is malformed".into());
    let len = usize::try_from(info.encoded_len().map_err(bad)?)
        .map_err(|_| CoreError::KeyFormat("the RSA private key is malformed".into()))?;
    let mut out = LockedBuf::zeroed(len)?;
    info.encode_to_slice(out.as_mut_slice()).map_err(bad)?;
    Ok(out)
}
