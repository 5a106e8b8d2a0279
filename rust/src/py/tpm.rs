//! Python bindings of the TPM parsers and verifier: each structure becomes a plain dict of
//! ints and bytes (the fields a verifier and the differential test against tpm2-pytss need).

#![forbid(unsafe_code)]

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::error::py::TpmFormatError;
use crate::tpm::parse::{self, Attested, FormatError, PublicDetail, Scheme, Signature, SymDef};
use crate::tpm::{credential, verify};

fn bytes_arg<'a>(value: &'a Bound<'_, PyAny>, what: &str) -> PyResult<&'a [u8]> {
    value
        .cast::<PyBytes>()
        .map(|b| b.as_bytes())
        .map_err(|_| PyTypeError::new_err(format!("{what} must be bytes")))
}

/// Run a parser with no panic crossing into Python; a panic (a bug) is a refusal too.
fn guarded<T>(f: impl FnOnce() -> Result<T, FormatError> + std::panic::UnwindSafe) -> PyResult<T> {
    match std::panic::catch_unwind(f) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(TpmFormatError::new_err(e.0)),
        Err(_) => Err(TpmFormatError::new_err("TPM structure could not be parsed")),
    }
}

fn sym_dict<'py>(py: Python<'py>, s: &SymDef) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("algorithm", s.algorithm)?;
    d.set_item("key_bits", s.key_bits)?;
    d.set_item("mode", s.mode)?;
    Ok(d)
}

fn scheme_dict<'py>(py: Python<'py>, s: &Scheme) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("scheme", s.scheme)?;
    d.set_item("hash", s.hash)?;
    d.set_item("count", s.count)?;
    d.set_item("kdf", s.kdf)?;
    Ok(d)
}

/// Parse a marshalled TPM2B_PUBLIC.
#[pyfunction]
pub fn tpm_parse_public<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let data = bytes_arg(data, "data")?;
    let p = guarded(|| parse::parse_public(data))?;
    let d = PyDict::new(py);
    d.set_item("public_area", PyBytes::new(py, p.area))?;
    d.set_item("type", p.key_type)?;
    d.set_item("name_alg", p.name_alg)?;
    d.set_item("object_attributes", p.attributes)?;
    d.set_item("auth_policy", PyBytes::new(py, p.auth_policy))?;
    match &p.detail {
        PublicDetail::Rsa {
            symmetric,
            scheme,
            key_bits,
            exponent,
            modulus,
        } => {
            d.set_item("symmetric", sym_dict(py, symmetric)?)?;
            d.set_item("scheme", scheme_dict(py, scheme)?)?;
            d.set_item("key_bits", *key_bits)?;
            d.set_item("exponent", *exponent)?;
            d.set_item("unique", PyBytes::new(py, modulus))?;
        }
        PublicDetail::Ecc {
            symmetric,
            scheme,
            curve,
            kdf,
            x,
            y,
        } => {
            d.set_item("symmetric", sym_dict(py, symmetric)?)?;
            d.set_item("scheme", scheme_dict(py, scheme)?)?;
            d.set_item("curve", *curve)?;
            d.set_item("kdf", scheme_dict(py, kdf)?)?;
            d.set_item("x", PyBytes::new(py, x))?;
            d.set_item("y", PyBytes::new(py, y))?;
        }
        PublicDetail::KeyedHash { scheme, unique } => {
            d.set_item("scheme", scheme_dict(py, scheme)?)?;
            d.set_item("unique", PyBytes::new(py, unique))?;
        }
        PublicDetail::SymCipher { symmetric, unique } => {
            d.set_item("symmetric", sym_dict(py, symmetric)?)?;
            d.set_item("unique", PyBytes::new(py, unique))?;
        }
    }
    // What a PEM pin is compared with; None for a key we could not verify with anyway.
    match verify::spki_der(&p) {
        Ok(der) => d.set_item("spki_der", PyBytes::new(py, &der))?,
        Err(_) => d.set_item("spki_der", py.None())?,
    }
    Ok(d)
}

/// Parse a marshalled TPM2B_ATTEST holding a quote or a certify structure.
#[pyfunction]
pub fn tpm_parse_attest<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let data = bytes_arg(data, "data")?;
    let a = guarded(|| parse::parse_attest(data))?;
    let d = PyDict::new(py);
    d.set_item("attest", PyBytes::new(py, a.signed))?;
    d.set_item("magic", a.magic)?;
    d.set_item("type", a.attest_type)?;
    d.set_item("qualified_signer", PyBytes::new(py, a.qualified_signer))?;
    d.set_item("extra_data", PyBytes::new(py, a.extra_data))?;
    d.set_item("clock", a.clock)?;
    d.set_item("reset_count", a.reset_count)?;
    d.set_item("restart_count", a.restart_count)?;
    d.set_item("safe", a.safe)?;
    d.set_item("firmware_version", a.firmware_version)?;
    match &a.attested {
        Attested::Quote {
            selections,
            pcr_digest,
        } => {
            let list = PyList::empty(py);
            for s in selections {
                list.append((s.hash, PyBytes::new(py, s.select)))?;
            }
            d.set_item("pcr_select", list)?;
            d.set_item("pcr_digest", PyBytes::new(py, pcr_digest))?;
        }
        Attested::Certify {
            name,
            qualified_name,
        } => {
            d.set_item("name", PyBytes::new(py, name))?;
            d.set_item("qualified_name", PyBytes::new(py, qualified_name))?;
        }
    }
    Ok(d)
}

/// Parse a marshalled TPMT_SIGNATURE.
#[pyfunction]
pub fn tpm_parse_signature<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let data = bytes_arg(data, "data")?;
    let s = guarded(|| parse::parse_signature(data))?;
    let d = PyDict::new(py);
    d.set_item("sig_alg", s.sig_alg())?;
    match s {
        Signature::Rsa { hash, sig, .. } => {
            d.set_item("hash", hash)?;
            d.set_item("sig", PyBytes::new(py, sig))?;
        }
        Signature::Ecc { hash, r, s, .. } => {
            d.set_item("hash", hash)?;
            d.set_item("r", PyBytes::new(py, r))?;
            d.set_item("s", PyBytes::new(py, s))?;
        }
        Signature::Hmac { hash, digest } => {
            d.set_item("hash", hash)?;
            d.set_item("digest", PyBytes::new(py, digest))?;
        }
        Signature::Null => {}
    }
    Ok(d)
}

/// Verify `signature` (TPMT_SIGNATURE) by the restricted signing key `public` (TPM2B_PUBLIC)
/// over `message` (the signed TPMS_ATTEST bytes). Returns what verified; raises TpmFormatError
/// with the reason otherwise.
#[pyfunction]
pub fn tpm_verify_signature(
    public: &Bound<'_, PyAny>,
    signature: &Bound<'_, PyAny>,
    message: &Bound<'_, PyAny>,
) -> PyResult<String> {
    let public = bytes_arg(public, "public")?;
    let signature = bytes_arg(signature, "signature")?;
    let message = bytes_arg(message, "message")?;
    guarded(|| {
        let key = parse::parse_public(public)?;
        let sig = parse::parse_signature(signature)?;
        verify::verify_quote_signature(&key, &sig, message)
    })
}

/// TPM2_MakeCredential in software: seal `credential` for the object named `name` under the
/// RSA endorsement key `ek_public` (TPM2B_PUBLIC). Returns the marshalled (TPM2B_ID_OBJECT,
/// TPM2B_ENCRYPTED_SECRET) for TPM2_ActivateCredential.
#[pyfunction]
pub fn tpm_make_credential<'py>(
    py: Python<'py>,
    ek_public: &Bound<'py, PyAny>,
    name: &Bound<'py, PyAny>,
    credential: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let ek_public = bytes_arg(ek_public, "ek_public")?;
    let name = bytes_arg(name, "name")?;
    let credential = bytes_arg(credential, "credential")?;
    let made = guarded(|| {
        let ek = parse::parse_public(ek_public)?;
        credential::make_credential(&ek, name, credential)
    })?;
    Ok((
        PyBytes::new(py, &made.id_object),
        PyBytes::new(py, &made.encrypted_secret),
    ))
}

/// Verify an X.509 signature (EK certificate chains): see `verify::verify_certificate_signature`.
#[pyfunction]
pub fn x509_verify_signature(
    algorithm: &str,
    public_key: &Bound<'_, PyAny>,
    message: &Bound<'_, PyAny>,
    signature: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let public_key = bytes_arg(public_key, "public_key")?;
    let message = bytes_arg(message, "message")?;
    let signature = bytes_arg(signature, "signature")?;
    guarded(|| verify::verify_certificate_signature(algorithm, public_key, message, signature))
}
