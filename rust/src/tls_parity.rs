//! What OpenSSL checks and webpki does not, so that the core's TLS never accepts a server chain
//! the interpreter's OpenSSL refuses: webpki takes from a trust anchor only its subject, key
//! and name constraints, and reads no keyUsage anywhere.
//!
//! `ParityVerifier` calls webpki's path builder itself and checks each candidate path webpki
//! verified (signatures, validity, name constraints) before webpki may settle on it:
//! - the trust anchor that signed the path (matched by subject and key) must be within its
//!   validity, not CA:FALSE, its keyUsage (if any) must allow keyCertSign, its
//!   extendedKeyUsage (if any) serverAuth or Server Gated Crypto, its pathLen the path's
//!   intermediates; a non-root anchor must lead to a root of the store that signed it;
//! - the path's intermediates' keyUsage must allow keyCertSign; the leaf's keyUsage and
//!   Netscape certificate type (if any) a TLS server's use;
//! - each certificate's authorityKeyIdentifier (if any) must name its issuer on the path
//!   (OpenSSL's `X509_check_akid`), and no certificate of the path, the anchor included, may
//!   carry a critical extension OpenSSL does not handle.
//!
//! A refused path sends webpki on to the next candidate, as OpenSSL accepts a chain if some
//! path to a root is acceptable. A leaf trusted as itself (a self-signed certificate in the
//! store) is left to webpki, as OpenSSL makes no CA checks on it.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, ServerName, SignatureVerificationAlgorithm, TrustAnchor, UnixTime,
};
use rustls::{
    CertificateError, DigitallySignedStruct, Error, ExtendedKeyPurpose, OtherError, RootCertStore,
    SignatureScheme,
};
use webpki::{EndEntityCert, VerifiedPath};
use x509_cert::der::asn1::{AnyRef, BitStringRef};
use x509_cert::der::oid::{AssociatedOid, ObjectIdentifier};
use x509_cert::der::{Decode, Encode, Reader, SliceReader};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use x509_cert::Certificate;

const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
/// Server Gated Crypto (Microsoft's and Netscape's): OpenSSL takes either for serverAuth on
/// a CA certificate. anyExtendedKeyUsage alone it does not.
const SERVER_GATED_CRYPTO: [ObjectIdentifier; 2] = [
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.10.3.3"),
    ObjectIdentifier::new_unwrap("2.16.840.1.113730.4.1"),
];
const NETSCAPE_CERT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113730.1.1");
/// nsCertType's "SSL server" bit (bit 1 of the BIT STRING, the first byte's second bit).
const NS_SSL_SERVER: u8 = 0x40;

/// Whether a leaf's Netscape certificate type (if present and readable) refuses TLS server
/// use: OpenSSL's server purpose check (`ns_reject`) refuses it then; webpki ignores it.
fn netscape_type_refuses_server(leaf: &Certificate) -> bool {
    let extensions = leaf.tbs_certificate.extensions.iter().flatten();
    let Some(found) = extensions
        .into_iter()
        .find(|e| e.extn_id == NETSCAPE_CERT_TYPE)
    else {
        return false;
    };
    let Ok(bits) = BitStringRef::from_der(found.extn_value.as_bytes()) else {
        return false;
    };
    bits.raw_bytes()
        .first()
        .is_none_or(|byte| byte & NS_SSL_SERVER == 0)
}

/// The extensions OpenSSL 3.0 handles when critical (`X509_supported_extension`): any other
/// critical extension on a chain's certificate, the trust anchor included, makes it refuse the
/// chain ("unhandled critical extension"). webpki ignores a trust anchor's extensions. Left
/// out, so refused here even where a build of OpenSSL handles them: RFC 3779's IP and AS
/// resources (OpenSSL also checks them along the path) and proxyCertInfo (proxy certificates
/// are refused by default).
const OPENSSL_HANDLED_CRITICAL: [ObjectIdentifier; 12] = [
    ObjectIdentifier::new_unwrap("2.16.840.1.113730.1.1"), // Netscape certificate type
    ObjectIdentifier::new_unwrap("2.5.29.15"),             // keyUsage
    ObjectIdentifier::new_unwrap("2.5.29.17"),             // subjectAltName
    ObjectIdentifier::new_unwrap("2.5.29.19"),             // basicConstraints
    ObjectIdentifier::new_unwrap("2.5.29.32"),             // certificatePolicies
    ObjectIdentifier::new_unwrap("2.5.29.31"),             // cRLDistributionPoints
    ObjectIdentifier::new_unwrap("2.5.29.37"),             // extKeyUsage
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.5"),  // OCSP noCheck
    ObjectIdentifier::new_unwrap("2.5.29.36"),             // policyConstraints
    ObjectIdentifier::new_unwrap("2.5.29.30"),             // nameConstraints
    ObjectIdentifier::new_unwrap("2.5.29.33"),             // policyMappings
    ObjectIdentifier::new_unwrap("2.5.29.54"),             // inhibitAnyPolicy
];

/// Whether `cert` has a critical extension OpenSSL does not handle.
fn has_unhandled_critical(cert: &Certificate) -> bool {
    let extensions = cert.tbs_certificate.extensions.iter().flatten();
    extensions
        .filter(|e| e.critical)
        .any(|e| !OPENSSL_HANDLED_CRITICAL.contains(&e.extn_id))
}

fn unhandled_critical() -> Error {
    Error::InvalidCertificate(CertificateError::UnhandledCriticalExtension)
}

/// The extension `T` of `cert`, if present and readable (an unreadable one: webpki decides).
fn extension<'a, T: AssociatedOid + Decode<'a>>(cert: &'a Certificate) -> Option<T> {
    let extensions = cert.tbs_certificate.extensions.as_ref()?;
    let found = extensions.iter().find(|e| e.extn_id == T::OID)?;
    T::from_der(found.extn_value.as_bytes()).ok()
}

/// What OpenSSL compares with a certificate's authorityKeyIdentifier before it takes another
/// certificate for its issuer (`X509_check_akid`); webpki reads no authorityKeyIdentifier.
#[derive(Debug, Clone)]
struct IssuerIds {
    key_id: Option<Vec<u8>>,
    serial: Vec<u8>,
    /// The DER of the issuer's own issuer name.
    issuer: Vec<u8>,
}

impl IssuerIds {
    fn of(cert: &Certificate) -> Option<Self> {
        Some(Self {
            key_id: extension::<SubjectKeyIdentifier>(cert).map(|id| id.0.as_bytes().to_vec()),
            serial: cert.tbs_certificate.serial_number.as_bytes().to_vec(),
            issuer: Encode::to_der(&cert.tbs_certificate.issuer).ok()?,
        })
    }

    /// Whether `child`'s authorityKeyIdentifier (if any, and readable) names this certificate:
    /// its key identifier if both have one, its serial and its issuer's name if the child's
    /// names them. (Names are compared as DER; OpenSSL compares canonical forms.)
    fn may_issue(&self, child: &Certificate) -> bool {
        let Some(akid) = extension::<AuthorityKeyIdentifier>(child) else {
            return true;
        };
        if let (Some(wanted), Some(key_id)) = (&akid.key_identifier, &self.key_id) {
            if wanted.as_bytes() != key_id.as_slice() {
                return false;
            }
        }
        if let Some(serial) = &akid.authority_cert_serial_number {
            if serial.as_bytes() != self.serial.as_slice() {
                return false;
            }
        }
        let directory_name =
            akid.authority_cert_issuer
                .iter()
                .flatten()
                .find_map(|name| match name {
                    GeneralName::DirectoryName(name) => Some(name),
                    _ => None,
                });
        directory_name.is_none_or(|name| Encode::to_der(name).is_ok_and(|der| der == self.issuer))
    }
}

const AKID_MISMATCH: &str = "a certificate's authorityKeyIdentifier does not name its issuer";

/// A trust anchor as OpenSSL uses it when it issues another certificate of the chain: webpki
/// keeps only its subject and key.
#[derive(Debug, Clone)]
pub struct AnchorLimit {
    der: Vec<u8>,
    /// Subject and subjectPublicKeyInfo as webpki's `TrustAnchor` holds them (no outer tag):
    /// how a verified path's anchor is matched to its limits.
    anchor_subject: Vec<u8>,
    anchor_spki: Vec<u8>,
    /// Subject and issuer names (DER): how a non-root anchor's issuer is looked up.
    subject: Vec<u8>,
    issuer: Vec<u8>,
    not_before: Duration,
    not_after: Duration,
    path_len: Option<u8>,
    ids: IssuerIds,
    unhandled_critical: bool,
    /// Why OpenSSL would not let it issue a TLS server's chain (CA:FALSE, keyUsage, EKU).
    issuing_refusal: Option<&'static str>,
}

/// `der`'s constraints as an issuing trust anchor (None: not a certificate this module reads;
/// webpki decides alone).
pub fn anchor_limit(der: &[u8]) -> Option<AnchorLimit> {
    let cert = Certificate::from_der(der).ok()?;
    let certificate = CertificateDer::from(der);
    let anchor = webpki::anchor_from_trusted_cert(&certificate).ok()?;
    let validity = &cert.tbs_certificate.validity;
    let constraints = extension::<BasicConstraints>(&cert);
    let issuing_refusal = if constraints.as_ref().is_some_and(|c| !c.ca) {
        Some("the trust anchor is not a CA (CA:FALSE)")
    } else if extension::<KeyUsage>(&cert).is_some_and(|ku| !ku.key_cert_sign()) {
        Some("the trust anchor's keyUsage does not allow keyCertSign")
    } else if extension::<ExtendedKeyUsage>(&cert).is_some_and(|eku| {
        !eku.0.contains(&SERVER_AUTH) && !SERVER_GATED_CRYPTO.iter().any(|sgc| eku.0.contains(sgc))
    }) {
        Some("the trust anchor's extendedKeyUsage does not allow serverAuth")
    } else {
        None
    };
    Some(AnchorLimit {
        der: der.to_vec(),
        anchor_subject: anchor.subject.to_vec(),
        anchor_spki: anchor.subject_public_key_info.to_vec(),
        subject: Encode::to_der(&cert.tbs_certificate.subject).ok()?,
        issuer: Encode::to_der(&cert.tbs_certificate.issuer).ok()?,
        not_before: validity.not_before.to_unix_duration(),
        not_after: validity.not_after.to_unix_duration(),
        path_len: constraints.and_then(|c| c.path_len_constraint),
        ids: IssuerIds::of(&cert)?,
        unhandled_critical: has_unhandled_critical(&cert),
        issuing_refusal,
    })
}

impl AnchorLimit {
    /// Why this anchor may not end a chain of `depth` intermediates at `now` (None: it may).
    fn own_refusal(&self, depth: usize, now: Duration) -> Option<Error> {
        if self.unhandled_critical {
            return Some(unhandled_critical());
        }
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

    /// Whether this is the anchor webpki ended a path with (the same subject and key).
    fn is(&self, anchor: &TrustAnchor<'_>) -> bool {
        self.anchor_subject == anchor.subject.as_ref()
            && self.anchor_spki == anchor.subject_public_key_info.as_ref()
    }

    /// Whether `issuer`'s key verifies this certificate's signature (with one of `algorithms`,
    /// matched to both algorithm identifiers as webpki matches them).
    fn signed_by(
        &self,
        issuer: &AnchorLimit,
        algorithms: &[&dyn SignatureVerificationAlgorithm],
    ) -> bool {
        let (Some((tbs, signature_algorithm, signature)), Some((key_algorithm, key))) =
            (signed_parts(&self.der), spki_parts(&issuer.anchor_spki))
        else {
            return false;
        };
        algorithms.iter().any(|algorithm| {
            algorithm.signature_alg_id().as_ref() == signature_algorithm
                && algorithm.public_key_alg_id().as_ref() == key_algorithm
                && algorithm.verify_signature(key, tbs, signature).is_ok()
        })
    }
}

/// A certificate's signed bytes (its TBSCertificate), its signature algorithm identifier's
/// contents and its signature.
fn signed_parts(der: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut reader = SliceReader::new(der).ok()?;
    let parts = reader
        .sequence(|r| {
            let tbs = r.tlv_bytes()?;
            let algorithm = r.decode::<AnyRef<'_>>()?.value();
            let signature = r.decode::<BitStringRef<'_>>()?;
            Ok((tbs, algorithm, signature.as_bytes()))
        })
        .ok()?;
    reader.finish(()).ok()?;
    let (tbs, algorithm, signature) = parts;
    Some((tbs, algorithm, signature?))
}

/// A subjectPublicKeyInfo's contents (as a webpki `TrustAnchor` holds them): its algorithm
/// identifier's contents and the key.
fn spki_parts(contents: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut reader = SliceReader::new(contents).ok()?;
    let algorithm = reader.decode::<AnyRef<'_>>().ok()?.value();
    let key = reader.decode::<BitStringRef<'_>>().ok()?.as_bytes()?;
    reader.finish(()).ok()?;
    Some((algorithm, key))
}

/// Most trusted certificates followed upwards from a non-root anchor to a root.
const MAX_ANCHOR_HOPS: usize = 8;

/// Why `anchor`, not a self-signed root, may not lead to one (None: it may). OpenSSL (without
/// partial chains, as Python's default context before 3.13) ends a chain only at a self-signed
/// root, and takes as a certificate's issuer one of the store that has its issuer's name and
/// whose key verifies its signature; each step up adds one to the depth the next pathLen sees.
fn way_up_refusal(
    anchors: &[AnchorLimit],
    anchor: &AnchorLimit,
    depth: usize,
    now: Duration,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    hops: usize,
) -> Option<Error> {
    if anchor.issuer == anchor.subject {
        return None;
    }
    let Ok(cert) = Certificate::from_der(&anchor.der) else {
        return Some(refuse("the trust anchor is not a self-signed root"));
    };
    let up = hops.checked_sub(1).is_some_and(|hops| {
        anchors
            .iter()
            .filter(|issuer| {
                issuer.subject == anchor.issuer
                    && issuer.ids.may_issue(&cert)
                    && anchor.signed_by(issuer, algorithms)
            })
            .any(|issuer| {
                issuer.own_refusal(depth + 1, now).is_none()
                    && way_up_refusal(anchors, issuer, depth + 1, now, algorithms, hops).is_none()
            })
    });
    (!up).then(|| refuse("the trust anchor is not a self-signed root"))
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

/// The rustls error for a webpki refusal: the `CertificateError` rustls's own WebPki verifier
/// reports for it, so that the reason codes (`tls::certificate_reason`) and the texts built
/// on them do not depend on which of the two verified. The revocation errors are not mapped:
/// no revocation options are given, so webpki never reports them.
fn rustls_error(error: webpki::Error) -> Error {
    use webpki::Error as W;
    use CertificateError as C;
    let certificate_error = match error {
        W::BadDer | W::BadDerTime | W::TrailingData(_) => C::BadEncoding,
        W::CertNotValidYet { time, not_before } => C::NotValidYetContext { time, not_before },
        W::CertExpired { time, not_after } => C::ExpiredContext { time, not_after },
        W::InvalidCertValidity => C::Expired,
        W::UnknownIssuer => C::UnknownIssuer,
        W::CertNotValidForName(context) => C::NotValidForNameContext {
            expected: context.expected,
            presented: context.presented,
        },
        W::InvalidSignatureForPublicKey => C::BadSignature,
        #[allow(deprecated)] // what webpki still reports where it has no context
        W::UnsupportedSignatureAlgorithm | W::UnsupportedSignatureAlgorithmForPublicKey =>
        {
            #[allow(deprecated)]
            C::UnsupportedSignatureAlgorithm
        }
        W::UnsupportedSignatureAlgorithmContext(context) => {
            C::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: context.signature_algorithm_id,
                supported_algorithms: context.supported_algorithms,
            }
        }
        W::UnsupportedSignatureAlgorithmForPublicKeyContext(context) => {
            C::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: context.signature_algorithm_id,
                public_key_algorithm_id: context.public_key_algorithm_id,
            }
        }
        #[allow(deprecated)] // what webpki still reports where it has no context
        W::RequiredEkuNotFound => C::InvalidPurpose,
        W::RequiredEkuNotFoundContext(context) => C::InvalidPurposeContext {
            required: key_purpose(context.required.oid_values().collect()),
            presented: context.present.into_iter().map(key_purpose).collect(),
        },
        other => C::Other(OtherError(Arc::new(other))),
    };
    Error::InvalidCertificate(certificate_error)
}

/// An extended key usage OID (its arcs) as rustls names it.
fn key_purpose(arcs: Vec<usize>) -> ExtendedKeyPurpose {
    const SERVER_AUTH_ARCS: &[usize] = &[1, 3, 6, 1, 5, 5, 7, 3, 1];
    const CLIENT_AUTH_ARCS: &[usize] = &[1, 3, 6, 1, 5, 5, 7, 3, 2];
    match arcs.as_slice() {
        SERVER_AUTH_ARCS => ExtendedKeyPurpose::ServerAuth,
        CLIENT_AUTH_ARCS => ExtendedKeyPurpose::ClientAuth,
        _ => ExtendedKeyPurpose::Other(arcs),
    }
}

/// webpki's path building and name check, with the checks it does not make on each path.
#[derive(Debug)]
pub struct ParityVerifier {
    roots: Vec<TrustAnchor<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
    anchors: Vec<AnchorLimit>,
}

impl ParityVerifier {
    /// Verifying against `roots` with `algorithms` (a crypto provider's), with the limits of
    /// those anchors.
    pub fn new(
        roots: RootCertStore,
        algorithms: WebPkiSupportedAlgorithms,
        anchors: Vec<AnchorLimit>,
    ) -> Self {
        Self {
            roots: roots.roots,
            algorithms,
            anchors,
        }
    }

    /// The checks on one path webpki verified (Err: refused, webpki tries the next).
    fn check_path(
        &self,
        end_entity: &[u8],
        path: &VerifiedPath<'_>,
        now: Duration,
    ) -> Result<(), Error> {
        // A leaf trusted as itself (a self-signed server certificate in the store): OpenSSL
        // makes no CA checks on it, and webpki checked it as the leaf.
        if self.anchors.iter().any(|a| a.der == end_entity) {
            return Ok(());
        }
        // Each certificate of the path in turn, from the leaf (None: one this module cannot
        // read, left to webpki).
        let mut child = Certificate::from_der(end_entity).ok();
        if child.as_ref().is_some_and(has_unhandled_critical) {
            return Err(unhandled_critical());
        }
        if let Some(ku) = child.as_ref().and_then(extension::<KeyUsage>) {
            if !(ku.digital_signature() || ku.key_encipherment() || ku.key_agreement()) {
                return Err(Error::InvalidCertificate(CertificateError::InvalidPurpose));
            }
        }
        if child.as_ref().is_some_and(netscape_type_refuses_server) {
            return Err(Error::InvalidCertificate(CertificateError::InvalidPurpose));
        }
        let mut depth = 0;
        for intermediate in path.intermediate_certificates() {
            depth += 1;
            let parsed = Certificate::from_der(intermediate.der().as_ref()).ok();
            if let Some(issuer) = &parsed {
                if has_unhandled_critical(issuer) {
                    return Err(unhandled_critical());
                }
                if extension::<KeyUsage>(issuer).is_some_and(|ku| !ku.key_cert_sign()) {
                    return Err(refuse(
                        "an intermediate's keyUsage does not allow keyCertSign",
                    ));
                }
                let ids = IssuerIds::of(issuer);
                if let (Some(child), Some(ids)) = (&child, ids) {
                    if !ids.may_issue(child) {
                        return Err(refuse(AKID_MISMATCH));
                    }
                }
            }
            child = parsed;
        }
        self.anchor_refusal(path.anchor(), child.as_ref(), depth, now)
            .map_or(Ok(()), Err)
    }

    /// Why the anchor that signed a path of `depth` intermediates, the last of which (or the
    /// leaf) is `child`, may not end it (None: it may; an anchor this module could not read:
    /// webpki decides alone). Certificates of the same subject and key in the store are one
    /// anchor to webpki: one of them that may is enough.
    fn anchor_refusal(
        &self,
        anchor: &TrustAnchor<'_>,
        child: Option<&Certificate>,
        depth: usize,
        now: Duration,
    ) -> Option<Error> {
        let mut first = None;
        for limit in self.anchors.iter().filter(|limit| limit.is(anchor)) {
            let named = child.is_none_or(|child| limit.ids.may_issue(child));
            let refusal = (!named).then(|| refuse(AKID_MISMATCH));
            let refusal = refusal
                .or_else(|| limit.own_refusal(depth, now))
                .or_else(|| {
                    way_up_refusal(
                        &self.anchors,
                        limit,
                        depth,
                        now,
                        self.algorithms.all,
                        MAX_ANCHOR_HOPS,
                    )
                });
            match refusal {
                None => return None,
                Some(error) => {
                    first.get_or_insert(error);
                }
            }
        }
        first
    }
}

impl ServerCertVerifier for ParityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = EndEntityCert::try_from(end_entity).map_err(rustls_error)?;
        let seconds = Duration::from_secs(now.as_secs());
        // The first refusal of ours, for when webpki finds no path we accept.
        let ours = RefCell::new(None);
        let check = |path: &VerifiedPath<'_>| {
            self.check_path(end_entity, path, seconds).map_err(|error| {
                ours.borrow_mut().get_or_insert(error);
                // Which error webpki carries on with does not matter: ours is reported.
                webpki::Error::UnknownIssuer
            })
        };
        let verified = cert.verify_for_usage(
            self.algorithms.all,
            &self.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&check),
        );
        // Our refusal when webpki verified some path and we accepted none of them; it comes
        // after the name check, as it did after rustls's WebPki verifier.
        let our_refusal = match verified {
            Ok(_) => None,
            Err(error) => match ours.into_inner() {
                Some(refusal) => Some(refusal),
                // No path verified: webpki's refusal, before the name check.
                None => return Err(rustls_error(error)),
            },
        };
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(rustls_error)?;
        our_refusal.map_or(Ok(ServerCertVerified::assertion()), Err)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[path = "tls_parity_tests.rs"]
mod tests;
