//! The TPM structures of an attestation block (TPM2B_PUBLIC, TPM2B_ATTEST, TPMT_SIGNATURE) on
//! hostile input, as the Python bindings call the parsers and the quote verifier. The first
//! byte picks the entry point; for the verifier the rest is three parts, each prefixed by a
//! big-endian u16 length. Every outcome but a panic, abort, hang or runaway allocation is fine,
//! and what parses must describe exactly the bytes it came from.
#![no_main]

use _core::tpm::parse::{self, Attested, PublicDetail};
use _core::tpm::verify;
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
    match mode % 4 {
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
