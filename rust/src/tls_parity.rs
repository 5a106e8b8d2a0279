//! What OpenSSL checks and webpki does not, so that the core's TLS never accepts a server chain
//! the interpreter's OpenSSL refuses: webpki takes from a trust anchor only its subject, key
//! and name constraints, and reads no keyUsage anywhere.
//!
//! `ParityVerifier`: after rustls's WebPki verifier accepted a chain, the trust anchor that
//! issued it must be within its validity, not CA:FALSE, its keyUsage (if any) must allow
//! keyCertSign, its extendedKeyUsage (if any) serverAuth and its pathLen the intermediates on the
//! path; those intermediates' keyUsage must allow keyCertSign, and the leaf's a TLS server's
//! use. A leaf trusted as itself (a self-signed certificate in the store) is left to webpki,
//! as OpenSSL makes no CA checks on it.

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme};
use x509_cert::der::oid::{AssociatedOid, ObjectIdentifier};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
use x509_cert::Certificate;

const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");

/// The extension `T` of `cert`, if present and readable (an unreadable one: webpki decides).
fn extension<'a, T: AssociatedOid + Decode<'a>>(cert: &'a Certificate) -> Option<T> {
    let extensions = cert.tbs_certificate.extensions.as_ref()?;
    let found = extensions.iter().find(|e| e.extn_id == T::OID)?;
    T::from_der(found.extn_value.as_bytes()).ok()
}

/// A trust anchor as OpenSSL uses it when it issues another certificate of the chain: webpki
/// keeps only its subject and key.
#[derive(Debug, Clone)]
pub struct AnchorLimit {
    der: Vec<u8>,
    subject: Vec<u8>,
    issuer: Vec<u8>,
    not_before: Duration,
    not_after: Duration,
    path_len: Option<u8>,
    /// Why OpenSSL would not let it issue a TLS server's chain (CA:FALSE, keyUsage, EKU).
    issuing_refusal: Option<&'static str>,
}

/// `der`'s constraints as an issuing trust anchor (None: not a certificate this module reads;
/// webpki decides alone).
pub fn anchor_limit(der: &[u8]) -> Option<AnchorLimit> {
    let cert = Certificate::from_der(der).ok()?;
    let validity = &cert.tbs_certificate.validity;
    let constraints = extension::<BasicConstraints>(&cert);
    let issuing_refusal = if constraints.as_ref().is_some_and(|c| !c.ca) {
        Some("the trust anchor is not a CA (CA:FALSE)")
    } else if extension::<KeyUsage>(&cert).is_some_and(|ku| !ku.key_cert_sign()) {
        Some("the trust anchor's keyUsage does not allow keyCertSign")
    } else if extension::<ExtendedKeyUsage>(&cert).is_some_and(|eku| {
        !eku.0.contains(&SERVER_AUTH) && !eku.0.contains(&ANY_EXTENDED_KEY_USAGE)
    }) {
        Some("the trust anchor's extendedKeyUsage does not allow serverAuth")
    } else {
        None
    };
    Some(AnchorLimit {
        der: der.to_vec(),
        subject: Encode::to_der(&cert.tbs_certificate.subject).ok()?,
        issuer: Encode::to_der(&cert.tbs_certificate.issuer).ok()?,
        not_before: validity.not_before.to_unix_duration(),
        not_after: validity.not_after.to_unix_duration(),
        path_len: constraints.and_then(|c| c.path_len_constraint),
        issuing_refusal,
    })
}

impl AnchorLimit {
    /// Why this anchor may not end a chain of `depth` intermediates at `now` (None: it may).
    fn own_refusal(&self, depth: usize, now: Duration) -> Option<Error> {
        if now < self.not_before {
            return Some(Error::InvalidCertificate(CertificateError::NotValidYet));
        }
        if now > self.not_after {
            return Some(Error::InvalidCertificate(CertificateError::Expired));
        }
        if let Some(why) = self.issuing_refusal {
            return Some(refuse(why));
        }
        if self.path_len.is_some_and(|n| depth > usize::from(n)) {
            return Some(refuse(
                "the trust anchor's pathLen does not allow this chain",
            ));
        }
        None
    }
}

/// Most trusted certificates followed upwards from a non-root anchor to a root.
const MAX_ANCHOR_HOPS: usize = 8;

/// Why the anchors named `subject` may not end a chain of `depth` intermediates (None: one
/// may; none of that name: refused). OpenSSL (without partial chains, as Python's default context before 3.13) ends a chain
/// only at a self-signed root: an anchor that is not one must itself lead to one in the store.
fn anchors_refusal(
    anchors: &[AnchorLimit],
    subject: &[u8],
    depth: usize,
    now: Duration,
    hops: usize,
) -> Option<Error> {
    let mut first = None;
    for anchor in anchors.iter().filter(|a| a.subject == subject) {
        let refusal = anchor.own_refusal(depth, now).or_else(|| {
            if anchor.issuer == anchor.subject {
                None
            } else if hops == 0 {
                Some(refuse("the trust anchor is not a self-signed root"))
            } else {
                anchors_refusal(anchors, &anchor.issuer, depth + 1, now, hops - 1)
                    .map(|_| refuse("the trust anchor is not a self-signed root"))
            }
        });
        match refusal {
            None => return None,
            Some(error) => {
                first.get_or_insert(error);
            }
        }
    }
    // No anchor of that name: the chain does not reach a root in the store.
    Some(first.unwrap_or_else(|| refuse("the trust anchor is not a self-signed root")))
}

/// A refusal of ours, shown as rustls shows any other certificate error.
#[derive(Debug)]
struct Refusal(&'static str);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Refusal {}

fn refuse(why: &'static str) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refusal(why)))))
}

/// rustls's WebPki verifier, then the checks it does not make.
#[derive(Debug)]
pub struct ParityVerifier {
    inner: Arc<WebPkiServerVerifier>,
    anchors: Vec<AnchorLimit>,
}

impl ParityVerifier {
    /// Over `inner`, with the limits of the anchors it trusts.
    pub fn new(inner: Arc<WebPkiServerVerifier>, anchors: Vec<AnchorLimit>) -> Self {
        Self { inner, anchors }
    }

    /// The checks on a chain webpki accepted.
    fn check_chain(
        &self,
        end_entity: &[u8],
        intermediates: &[CertificateDer<'_>],
        now: Duration,
    ) -> Result<(), Error> {
        // A leaf trusted as itself (a self-signed server certificate in the store): OpenSSL
        // makes no CA checks on it, and webpki checked it as the leaf.
        if self.anchors.iter().any(|a| a.der == end_entity) {
            return Ok(());
        }
        let Ok(leaf) = Certificate::from_der(end_entity) else {
            return Ok(());
        };
        if let Some(ku) = extension::<KeyUsage>(&leaf) {
            if !(ku.digital_signature() || ku.key_encipherment() || ku.key_agreement()) {
                return Err(Error::InvalidCertificate(CertificateError::InvalidPurpose));
            }
        }
        let parsed: Vec<Certificate> = intermediates
            .iter()
            .filter_map(|der| Certificate::from_der(der).ok())
            .collect();
        // The path from the leaf: each issuer found among the intermediates, until an anchor.
        let mut issuer = leaf.tbs_certificate.issuer.clone();
        for depth in 0..=parsed.len() {
            let issuer_der = Encode::to_der(&issuer).unwrap_or_default();
            if self.anchors.iter().any(|a| a.subject == issuer_der) {
                // Refused only if no anchor of that name may end the chain.
                let refusal =
                    anchors_refusal(&self.anchors, &issuer_der, depth, now, MAX_ANCHOR_HOPS);
                return refusal.map_or(Ok(()), Err);
            }
            let Some(next) = parsed.iter().find(|c| c.tbs_certificate.subject == issuer) else {
                return Ok(());
            };
            if extension::<KeyUsage>(next).is_some_and(|ku| !ku.key_cert_sign()) {
                return Err(refuse(
                    "an intermediate's keyUsage does not allow keyCertSign",
                ));
            }
            issuer = next.tbs_certificate.issuer.clone();
        }
        Ok(())
    }
}

impl ServerCertVerifier for ParityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.check_chain(
            end_entity,
            intermediates,
            Duration::from_secs(now.as_secs()),
        )?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
