//! `ParityVerifier` on review8's path cases (fixtures written by
//! rust/tests/tls_parity/make_fixtures.py, valid 2024 to 2049, verified in 2030), and its
//! webpki error mapping against rustls's own WebPki verifier.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, Error, ExtendedKeyPurpose};

use super::*;
use crate::tls::trust_anchors;

/// 2030-01-01T00:00:00Z, within every fixture's validity.
const IN_2030: u64 = 1_893_456_000;

macro_rules! fixture {
    ($slug:literal) => {
        Fixture {
            store: include_bytes!(concat!("../tests/tls_parity/", $slug, "-store.pem")),
            chain: include_bytes!(concat!("../tests/tls_parity/", $slug, "-chain.pem")),
        }
    };
}

/// A trust store and what a server sends (leaf first), as PEM.
struct Fixture {
    store: &'static [u8],
    chain: &'static [u8],
}

fn certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap())
        .collect()
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms
}

fn at(seconds: u64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(seconds))
}

fn name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_owned()).unwrap()
}

/// The parity verifier's verdict on `chain` against `store`.
fn parity(store: &[u8], chain: &[u8], host: &str, seconds: u64) -> Result<(), Error> {
    let anchors = trust_anchors(store).unwrap();
    let verifier = ParityVerifier::new(anchors.store, algorithms(), anchors.limits);
    let certs = certificates(chain);
    verifier
        .verify_server_cert(&certs[0], &certs[1..], &name(host), &[], at(seconds))
        .map(|_| ())
}

/// rustls's own WebPki verifier's verdict, for the error mapping.
fn rustls_webpki(store: &[u8], chain: &[u8], host: &str, seconds: u64) -> Result<(), Error> {
    let anchors = trust_anchors(store).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(anchors.store), provider)
        .build()
        .unwrap();
    let certs = certificates(chain);
    verifier
        .verify_server_cert(&certs[0], &certs[1..], &name(host), &[], at(seconds))
        .map(|_| ())
}

/// The text of one of our refusals (panics on anything else).
fn our_refusal(result: Result<(), Error>) -> String {
    match result {
        Err(Error::InvalidCertificate(CertificateError::Other(other))) => other.to_string(),
        other => panic!("not a refusal of ours: {other:?}"),
    }
}

fn verdict(fixture: &Fixture) -> Result<(), Error> {
    parity(fixture.store, fixture.chain, "localhost", IN_2030)
}

const NO_CERT_SIGN: &str = "an intermediate's keyUsage does not allow keyCertSign";
const ANCHOR_NO_CERT_SIGN: &str = "the trust anchor's keyUsage does not allow keyCertSign";
const NOT_A_ROOT: &str = "the trust anchor is not a self-signed root";
const PATH_LEN: &str = "the trust anchor's pathLen does not allow this chain";

#[test]
fn a_decoy_intermediate_without_key_cert_sign_does_not_hide_the_real_issuer() {
    assert!(verdict(&fixture!("decoy-bad-before")).is_ok());
    assert!(verdict(&fixture!("decoy-bad-after")).is_ok());
}

#[test]
fn a_decoy_intermediate_with_key_cert_sign_does_not_stand_in_for_the_real_issuer() {
    for fixture in [fixture!("decoy-good-before"), fixture!("decoy-good-after")] {
        assert_eq!(our_refusal(verdict(&fixture)), NO_CERT_SIGN);
    }
}

#[test]
fn path_length_is_counted_on_the_verified_path() {
    assert_eq!(
        our_refusal(verdict(&fixture!("pathlen-real-deep"))),
        PATH_LEN
    );
    assert!(verdict(&fixture!("pathlen-real-shallow")).is_ok());
}

#[test]
fn the_anchor_is_the_one_whose_key_signed() {
    assert!(verdict(&fixture!("twin-roots-good-signs-good-first")).is_ok());
    assert!(verdict(&fixture!("twin-roots-good-signs-bad-first")).is_ok());
    for fixture in [
        fixture!("twin-roots-bad-signs-good-first"),
        fixture!("twin-roots-bad-signs-bad-first"),
    ] {
        assert_eq!(our_refusal(verdict(&fixture)), ANCHOR_NO_CERT_SIGN);
    }
}

#[test]
fn a_non_root_anchor_leads_only_to_a_root_that_signed_it() {
    assert_eq!(
        our_refusal(verdict(&fixture!("nonroot-anchor-wrong-root"))),
        NOT_A_ROOT
    );
    assert!(verdict(&fixture!("nonroot-anchor-real-root-after")).is_ok());
}

#[test]
fn a_name_mismatch_is_reported_before_a_refusal_of_ours() {
    let fixture = fixture!("decoy-good-before");
    let refused = parity(fixture.store, fixture.chain, "other.test", IN_2030);
    assert!(
        matches!(
            refused,
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{refused:?}"
    );
}

#[test]
fn webpki_refusals_are_the_errors_rustls_gives() {
    let good = fixture!("decoy-bad-before");
    let elsewhere = fixture!("twin-roots-good-signs-good-first");
    let before_2024 = 1_700_000_000;
    let after_2049 = 2_600_000_000;
    let cases: [(&[u8], &[u8], &str, u64); 7] = [
        (good.store, good.chain, "localhost", IN_2030),
        (good.store, good.chain, "other.test", IN_2030),
        (good.store, good.chain, "127.0.0.1", IN_2030),
        (good.store, good.chain, "localhost", before_2024),
        (good.store, good.chain, "localhost", after_2049),
        (elsewhere.store, good.chain, "localhost", IN_2030),
        // A chain that is not a certificate at all.
        (
            good.store,
            b"-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
            "localhost",
            IN_2030,
        ),
    ];
    for (index, (store, chain, host, seconds)) in cases.into_iter().enumerate() {
        let ours = parity(store, chain, host, seconds);
        let theirs = rustls_webpki(store, chain, host, seconds);
        assert_eq!(ours.is_ok(), index == 0, "only the first case is accepted");
        assert_eq!(
            format!("{ours:?}"),
            format!("{theirs:?}"),
            "{host} at {seconds}"
        );
    }
}

fn mapped(error: webpki::Error) -> CertificateError {
    match rustls_error(error) {
        Error::InvalidCertificate(e) => e,
        other => panic!("not a certificate error: {other:?}"),
    }
}

#[test]
#[allow(deprecated)] // the context-free variants webpki still reports
fn every_mapped_webpki_error_is_rustls_s_certificate_error() {
    use webpki::Error as W;
    use CertificateError as C;
    for encoding in [
        W::BadDer,
        W::BadDerTime,
        W::TrailingData(webpki::DerTypeId::Certificate),
    ] {
        assert_eq!(mapped(encoding), C::BadEncoding);
    }
    let (time, bound) = (at(IN_2030), at(IN_2030 + 1));
    assert_eq!(
        mapped(W::CertNotValidYet {
            time,
            not_before: bound
        }),
        C::NotValidYetContext {
            time,
            not_before: bound
        }
    );
    assert_eq!(
        mapped(W::CertExpired {
            time,
            not_after: bound
        }),
        C::ExpiredContext {
            time,
            not_after: bound
        }
    );
    assert_eq!(mapped(W::InvalidCertValidity), C::Expired);
    assert_eq!(mapped(W::UnknownIssuer), C::UnknownIssuer);
    assert_eq!(
        mapped(W::CertNotValidForName(webpki::InvalidNameContext {
            expected: name("localhost"),
            presented: vec!["other.test".to_owned()],
        })),
        C::NotValidForNameContext {
            expected: name("localhost"),
            presented: vec!["other.test".to_owned()],
        }
    );
    assert_eq!(mapped(W::InvalidSignatureForPublicKey), C::BadSignature);
    assert_eq!(
        mapped(W::UnsupportedSignatureAlgorithm),
        C::UnsupportedSignatureAlgorithm
    );
    assert_eq!(
        mapped(W::UnsupportedSignatureAlgorithmForPublicKey),
        C::UnsupportedSignatureAlgorithm
    );
    let supported = vec![rustls::pki_types::alg_id::ECDSA_SHA256];
    assert_eq!(
        mapped(W::UnsupportedSignatureAlgorithmContext(
            webpki::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: vec![1, 2],
                supported_algorithms: supported.clone(),
            }
        )),
        C::UnsupportedSignatureAlgorithmContext {
            signature_algorithm_id: vec![1, 2],
            supported_algorithms: supported,
        }
    );
    assert_eq!(
        mapped(W::UnsupportedSignatureAlgorithmForPublicKeyContext(
            webpki::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: vec![1, 2],
                public_key_algorithm_id: vec![3, 4],
            }
        )),
        C::UnsupportedSignatureAlgorithmForPublicKeyContext {
            signature_algorithm_id: vec![1, 2],
            public_key_algorithm_id: vec![3, 4],
        }
    );
    assert_eq!(mapped(W::RequiredEkuNotFound), C::InvalidPurpose);
    assert_eq!(
        mapped(W::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::server_auth(),
                present: vec![vec![1, 3, 6, 1, 5, 5, 7, 3, 2], vec![1, 2, 3]],
            }
        )),
        C::InvalidPurposeContext {
            required: ExtendedKeyPurpose::ServerAuth,
            presented: vec![
                ExtendedKeyPurpose::ClientAuth,
                ExtendedKeyPurpose::Other(vec![1, 2, 3])
            ],
        }
    );
    // Anything else: rustls's Other, carrying webpki's error (its text).
    match mapped(W::CaUsedAsEndEntity) {
        C::Other(other) => assert_eq!(other.to_string(), W::CaUsedAsEndEntity.to_string()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unreadable_certificates_give_no_limits_and_no_signed_parts() {
    assert!(anchor_limit(b"not a certificate").is_none());
    assert!(signed_parts(b"\x30\x00").is_none());
    assert!(spki_parts(b"").is_none());
}

const AKID_MISMATCH_TEXT: &str = "a certificate's authorityKeyIdentifier does not name its issuer";

#[test]
fn an_authority_key_identifier_must_name_the_issuer() {
    for fixture in [
        fixture!("akid-other-key"),
        fixture!("akid-other-serial"),
        fixture!("akid-other-name"),
        fixture!("akid-other-key-under-intermediate"),
    ] {
        assert_eq!(our_refusal(verdict(&fixture)), AKID_MISMATCH_TEXT);
    }
    assert!(verdict(&fixture!("akid-all-right")).is_ok());
}

#[test]
fn an_intermediate_its_child_does_not_name_is_passed_by_for_one_it_does() {
    assert!(verdict(&fixture!("akid-twin-intermediates")).is_ok());
}

#[test]
fn a_non_root_anchor_must_name_its_root() {
    assert_eq!(
        our_refusal(verdict(&fixture!("akid-nonroot-anchor-other-key"))),
        NOT_A_ROOT
    );
}

#[test]
fn a_critical_extension_openssl_does_not_handle_refuses_the_chain_even_on_the_anchor() {
    for fixture in [
        fixture!("critical-unknown-root"),
        fixture!("critical-ian-root"),
    ] {
        let refused = verdict(&fixture);
        assert!(
            matches!(
                refused,
                Err(Error::InvalidCertificate(
                    CertificateError::UnhandledCriticalExtension
                ))
            ),
            "{refused:?}"
        );
    }
    assert!(verdict(&fixture!("critical-crldp-root")).is_ok());
    assert!(verdict(&fixture!("critical-ian-intermediate")).is_err());
    assert!(verdict(&fixture!("critical-ian-leaf")).is_err());
}
