//! Key bindings: `ClientKeyPair` (the private key stays in locked memory) and `ServerPublicKey`.
//! Argument conversion, the GIL released around every RSA/KDF operation, `no_panic` around
//! every entry point.

#![forbid(unsafe_code)]

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString};

use crate::error::py::no_panic;
use crate::{keys, pystr};

/// Longest password accepted (any real one is far shorter).
const MAX_PASSWORD_BYTES: usize = 64 * 1024;

/// A password's bytes: a `bytes` password borrowed, a `str` one as UTF-8 (borrowed when
/// ASCII, else encoded in locked memory, so that no UTF-8 copy is cached in the caller's
/// `str`).
enum Password<'a> {
    Bytes(&'a [u8]),
    Text(pystr::Utf8<'a>),
}

impl Password<'_> {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Password::Bytes(b) => b,
            Password::Text(t) => t.as_bytes(),
        }
    }
}

fn password_bytes<'a>(password: Option<&'a Bound<'_, PyAny>>) -> PyResult<Option<Password<'a>>> {
    let Some(p) = password else { return Ok(None) };
    if let Ok(s) = p.cast::<PyString>() {
        return match pystr::utf8(s, MAX_PASSWORD_BYTES) {
            Ok(text) => Ok(Some(Password::Text(text))),
            Err(pystr::StrError::Python(e)) => Err(e),
            Err(pystr::StrError::Memory(e)) => Err(e.into()),
            Err(pystr::StrError::LoneSurrogate) => Err(PyValueError::new_err(
                "password contains a lone surrogate and cannot be encoded as UTF-8",
            )),
            Err(pystr::StrError::TooLong) => Err(PyValueError::new_err(format!(
                "password longer than {MAX_PASSWORD_BYTES} bytes"
            ))),
        };
    }
    if let Ok(b) = p.cast::<PyBytes>() {
        return Ok(Some(Password::Bytes(b.as_bytes())));
    }
    Err(PyTypeError::new_err(format!(
        "password must be str or bytes, not {}",
        p.get_type().name()?
    )))
}

fn text_bytes<'a>(value: &'a Bound<'_, PyAny>, what: &str) -> PyResult<&'a [u8]> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_str()?.as_bytes());
    }
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(b.as_bytes());
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be str or bytes, not {}",
        value.get_type().name()?
    )))
}

#[pyclass(module = "nomyo_native._core", frozen)]
pub struct ClientKeyPair(pub keys::ClientKeyPair);

#[pymethods]
impl ClientKeyPair {
    #[staticmethod]
    #[pyo3(signature = (bits = None))]
    fn generate(py: Python<'_>, bits: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let bits = match bits {
            None => keys::DEFAULT_BITS,
            Some(b) => {
                if !b.is_instance_of::<PyInt>() || b.is_instance_of::<pyo3::types::PyBool>() {
                    return Err(PyTypeError::new_err("bits must be an int"));
                }
                // Out-of-range ints (negative, huge) are just unsupported sizes.
                b.extract::<usize>().unwrap_or(0)
            }
        };
        let kp = py.detach(|| no_panic(|| keys::ClientKeyPair::generate(bits)))?;
        Ok(Self(kp))
    }

    #[staticmethod]
    #[pyo3(signature = (private_key_path, password = None))]
    fn load(
        py: Python<'_>,
        private_key_path: PathBuf,
        password: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let password = password_bytes(password)?;
        let password = password.as_ref().map(Password::as_bytes);
        let kp = py.detach(|| {
            no_panic(AssertUnwindSafe(|| {
                keys::ClientKeyPair::load(&private_key_path, password)
            }))
        })?;
        Ok(Self(kp))
    }

    #[pyo3(signature = (private_key_path, public_key_path, password = None))]
    fn save(
        &self,
        py: Python<'_>,
        private_key_path: PathBuf,
        public_key_path: PathBuf,
        password: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let password = password_bytes(password)?;
        let password = password.as_ref().map(Password::as_bytes);
        let kp = &self.0;
        py.detach(|| {
            no_panic(AssertUnwindSafe(|| {
                kp.save(&private_key_path, &public_key_path, password)
            }))
        })
    }

    #[getter]
    fn public_key_pem(&self) -> &str {
        self.0.public_key_pem()
    }

    #[getter]
    fn fingerprint(&self) -> &str {
        self.0.fingerprint()
    }

    #[getter]
    fn bits(&self) -> usize {
        self.0.bits()
    }

    #[getter]
    fn wiped(&self) -> bool {
        self.0.is_wiped()
    }

    fn wipe(&self, py: Python<'_>) {
        let kp = &self.0;
        py.detach(|| kp.wipe());
    }

    fn __repr__(&self) -> String {
        format!(
            "ClientKeyPair(bits={}, fingerprint='{}'{})",
            self.0.bits(),
            self.0.fingerprint(),
            if self.0.is_wiped() { ", wiped" } else { "" }
        )
    }
}

#[pyclass(module = "nomyo_native._core", frozen)]
pub struct ServerPublicKey(pub keys::ServerPublicKey);

#[pymethods]
impl ServerPublicKey {
    #[staticmethod]
    fn from_pem(pem: &Bound<'_, PyAny>) -> PyResult<Self> {
        let pem = text_bytes(pem, "pem")?;
        Ok(Self(no_panic(AssertUnwindSafe(|| {
            keys::ServerPublicKey::from_pem(pem)
        }))?))
    }

    #[getter]
    fn pem(&self) -> &str {
        self.0.pem()
    }

    #[getter]
    fn fingerprint(&self) -> &str {
        self.0.fingerprint()
    }

    #[getter]
    fn bits(&self) -> usize {
        self.0.bits()
    }

    fn __repr__(&self) -> String {
        let (bits, fingerprint) = (self.0.bits(), self.0.fingerprint());
        format!("ServerPublicKey(bits={bits}, fingerprint='{fingerprint}')")
    }
}
