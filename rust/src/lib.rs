//! `nomyo_native._core`: the native core of nomyo-native.
//!
//! The pure-Rust modules do every operation that touches a secret; this file holds only the
//! thin PyO3 bindings over them (compiled with the default `python` feature).

pub mod envelope;
pub mod error;
pub mod keys;
pub mod secret;

#[cfg(feature = "python")]
pub mod json;

#[cfg(feature = "python")]
use pyo3::prelude::*;

#[cfg(feature = "python")]
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    error::py::register(m)?;
    register_memory(m)?;
    register_crypto(m)?;
    Ok(())
}

// ---- memory bindings: memory_status, BufferLock, wipe, test probes ---------------------------

#[cfg(feature = "python")]
fn register_memory(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}

// ---- crypto bindings: ClientKeyPair, ServerPublicKey, seal, open ------------------------------

#[cfg(feature = "python")]
fn register_crypto(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MAX_PLAINTEXT_BYTES", envelope::MAX_PLAINTEXT_BYTES)?;
    m.add("MAX_ENVELOPE_BYTES", envelope::MAX_ENVELOPE_BYTES)?;
    m.add("MIN_RSA_BITS", keys::MIN_RSA_BITS)?;
    m.add_class::<crypto_py::ClientKeyPair>()?;
    m.add_class::<crypto_py::ServerPublicKey>()?;
    m.add_function(wrap_pyfunction!(crypto_py::seal, m)?)?;
    m.add_function(wrap_pyfunction!(crypto_py::open, m)?)?;
    Ok(())
}

/// Thin wrappers over `keys` and `envelope`: argument conversion, the GIL released around every
/// RSA/AES/KDF operation, and `no_panic` around every entry point.
#[cfg(feature = "python")]
mod crypto_py {
    use std::panic::AssertUnwindSafe;
    use std::path::PathBuf;

    use pyo3::exceptions::PyTypeError;
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyInt, PyString, PyTuple};

    use crate::error::py::no_panic;
    use crate::secret::LockedBuf;
    use crate::{envelope, json, keys};

    /// `str` (UTF-8) or `bytes` password, borrowed from the Python object.
    fn password_bytes<'a>(password: Option<&'a Bound<'_, PyAny>>) -> PyResult<Option<&'a [u8]>> {
        let Some(p) = password else { return Ok(None) };
        if let Ok(s) = p.cast::<PyString>() {
            return Ok(Some(s.to_str()?.as_bytes()));
        }
        if let Ok(b) = p.cast::<PyBytes>() {
            return Ok(Some(b.as_bytes()));
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
            Ok(Self(no_panic(AssertUnwindSafe(|| keys::ServerPublicKey::from_pem(pem)))?))
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

    /// Serialize `payload` into locked memory and seal it for `server_key`.
    #[pyfunction]
    pub fn seal<'py>(
        py: Python<'py>,
        payload: &Bound<'py, PyAny>,
        server_key: &Bound<'py, ServerPublicKey>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut plaintext = no_panic(|| LockedBuf::with_capacity(0))?;
        no_panic(AssertUnwindSafe(|| {
            json::write_py(payload, &mut plaintext, envelope::MAX_PLAINTEXT_BYTES)
        }))?;
        let key = &server_key.get().0;
        let body =
            py.detach(|| no_panic(AssertUnwindSafe(|| envelope::seal(&mut plaintext, key))))?;
        Ok(PyBytes::new(py, &body))
    }

    /// Check, unwrap and decrypt `body`; build the payload straight from locked memory.
    #[pyfunction]
    pub fn open<'py>(
        py: Python<'py>,
        body: &Bound<'py, PyAny>,
        keypair: &Bound<'py, ClientKeyPair>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let body = body
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("body must be bytes"))?;
        let body = body.as_bytes();
        let kp = &keypair.get().0;
        let opened = py.detach(|| no_panic(AssertUnwindSafe(|| envelope::open(body, kp))))?;
        let payload = no_panic(AssertUnwindSafe(|| json::read_py(py, &opened.plaintext)))?;
        drop(opened.plaintext);
        let processed_at: Option<Bound<'py, PyAny>> = match opened.processed_at {
            None => None,
            Some(n) => Some(if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }),
        };
        let processed_at = processed_at.unwrap_or_else(|| py.None().into_bound(py));
        let algorithm = PyString::new(py, &opened.algorithm).into_any();
        PyTuple::new(py, [payload, processed_at, algorithm])
    }
}
