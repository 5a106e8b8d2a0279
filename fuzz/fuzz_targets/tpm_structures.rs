//! The TPM structures of an attestation block (TPM2B_PUBLIC, TPM2B_ATTEST, TPMT_SIGNATURE) on
//! hostile input, as the Python bindings call the parsers, the quote verifier and
//! MakeCredential (enrollment: an EK public area offered by the server). The first byte picks
//! the entry point; for the verifier (mode 3) and MakeCredential (mode 4) the rest is three
//! parts, the first two prefixed by a big-endian u16 length. Every outcome but a panic, abort, hang or runaway allocation is fine,
//! and what parses must describe exactly the bytes it came from.
#![no_main]

use _core::tpm::parse::{self, Attested, PublicDetail};
use _core::tpm::{credential, digest_size, verify};
use libfuzzer_sys::fuzz_target;

fn split(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let len = u16::from_be_bytes(*len) as usize;
    (rest.len() >= len).then(|| rest.split_at(len))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => {
            if let Ok(public) = parse::parse_public(input) {
                assert_eq!(public.area, &input[2..]);
                let spki = verify::spki_der(&public);
                if let PublicDetail::KeyedHash { .. } | PublicDetail::SymCipher { .. } =
                    public.detail
                {
                    assert!(spki.is_err());
                }
            }
        }
        1 => {
            if let Ok(attest) = parse::parse_attest(input) {
                assert_eq!(attest.signed, &input[2..]);
                if let Attested::Quote { selections, .. } = &attest.attested {
                    assert!(selections.len() <= parse::MAX_PCR_BANKS as usize);
                }
            }
        }
        2 => {
            let _ = parse::parse_signature(input);
        }
        4 => {
            let Some((ek, rest)) = split(input) else {
                return;
            };
            let Some((name, secret)) = split(rest) else {
                return;
            };
            if let Ok(ek) = parse::parse_public(ek) {
                // A fixed seed of the right size keeps the target deterministic.
                let seed = vec![7u8; digest_size(ek.name_alg).unwrap_or(32)];
                if let Ok(made) = credential::make_credential_with_seed(&ek, name, secret, &seed) {
                    assert!(made.id_object.len() >= 4 && made.encrypted_secret.len() >= 2);
                }
            }
        }
        _ => {
            let Some((public, rest)) = split(input) else {
                return;
            };
            let Some((signature, message)) = split(rest) else {
                return;
            };
            if let (Ok(key), Ok(sig)) = (
                parse::parse_public(public),
                parse::parse_signature(signature),
            ) {
                let _ = verify::verify_quote_signature(&key, &sig, message);
            }
        }
    }
});
