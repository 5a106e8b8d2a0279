//! `nomyo_native._core`: the native core of nomyo-native.
//!
//! The pure-Rust modules do every operation that touches a secret; this file holds only the
//! thin PyO3 bindings over them (compiled with the default `python` feature).

pub mod envelope;
pub mod error;
pub mod keys;
pub mod lc_heap;
pub mod request_body;
pub mod secret;
pub mod tpm;
#[cfg(windows)]
mod win;

#[cfg(feature = "python")]
pub mod json;
#[cfg(feature = "python")]
pub mod pystr;

/// `_core._testing`: probes for the test suite, compiled only with the `testing` feature.
#[cfg(feature = "testing")]
mod testing;

#[cfg(feature = "python")]
use pyo3::prelude::*;

#[cfg(feature = "python")]
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // First, so that `fork` takes the LockedBuf pool after lc_heap has let aws-lc users finish.
    secret::install_fork_handlers();
    // Before aws-lc allocates anything: its keys and contexts go to locked, wiped memory.
    lc_heap::install();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    error::py::register(m)?;
    register_memory(m)?;
    register_crypto(m)?;
    tpm::py::register(m)?;
    request_body::py::register(m)?;
    #[cfg(feature = "testing")]
    testing::register(m)?;
    Ok(())
}

// ---- memory bindings: memory_status, BufferLock, wipe ----------------------------------------

#[cfg(feature = "python")]
fn register_memory(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // MAX_PLAINTEXT_BYTES, MAX_ENVELOPE_BYTES and MIN_RSA_BITS are added by register_crypto.
    m.add("MAX_JSON_DEPTH", json::MAX_JSON_DEPTH)?;
    m.add_function(wrap_pyfunction!(memory_py::memory_status, m)?)?;
    m.add_function(wrap_pyfunction!(memory_py::wipe, m)?)?;
    m.add_class::<memory_py::BufferLock>()?;
    Ok(())
}

#[cfg(feature = "python")]
mod memory_py {
    use pyo3::exceptions::{PyTypeError, PyValueError};
    use pyo3::prelude::*;
    use pyo3::types::{PyDict, PyMemoryView, PyType};

    use crate::error::py::no_panic;
    use crate::secret;

    #[pyfunction]
    pub fn memory_status(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
        let status = no_panic(|| Ok(secret::memory_status()))?;
        let d = PyDict::new(py);
        d.set_item(
            "method",
            if status.mlock_works {
                "mlock"
            } else {
                "zero-only"
            },
        )?;
        d.set_item("platform", status.platform)?;
        d.set_item("bytes_locked", status.bytes_locked)?;
        d.set_item("bytes_unlocked", status.bytes_unlocked)?;
        d.set_item("buffers_live", status.buffers_live)?;
        d.set_item("bytes_pooled", status.bytes_pooled)?;
        d.set_item("pool_limit_bytes", status.pool_limit_bytes)?;
        d.set_item("lock_failures", status.lock_failures)?;
        d.set_item("dump_exclusion", status.dump_exclusion)?;
        d.set_item("guard_pages", status.guard_pages)?;
        d.set_item("lock_limit_bytes", status.lock_limit_bytes)?;
        let heap = PyDict::new(py);
        heap.set_item("installed", status.lc_heap.installed)?;
        heap.set_item("bytes_locked", status.lc_heap.locked_bytes)?;
        heap.set_item("bytes_unlocked", status.lc_heap.unlocked_bytes)?;
        heap.set_item("small_blocks_unlocked", status.lc_heap.small_unlocked_bytes)?;
        heap.set_item("lock_failures", status.lc_heap.lock_failures)?;
        d.set_item("aws_lc_heap", heap)?;
        Ok(d)
    }

    /// A caller's buffer held exported (so it cannot be resized) through a memoryview, with a
    /// ctypes array over it for the address: the limited API of CPython 3.10 (abi3) has no
    /// buffer-protocol calls, ctypes reaches the same export with stable calls only.
    struct Export {
        view: Py<PyAny>,
        array: Option<Py<PyAny>>,
        addr: usize,
        len: usize,
    }

    impl Export {
        /// Drop the ctypes array, then release the memoryview's export of the caller's buffer.
        fn release(mut self, py: Python<'_>) {
            self.array = None;
            // Fails only if someone else exported our view, which nobody can reach.
            let _ = self.view.bind(py).call_method0("release");
        }
    }

    fn type_name(obj: &Bound<'_, PyAny>) -> String {
        obj.get_type()
            .name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "?".into())
    }

    /// Export a caller's buffer, checked to be writable and contiguous.
    fn export_writable(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Export> {
        let py = obj.py();
        let view = PyMemoryView::from(obj).map_err(|_| {
            PyTypeError::new_err(format!(
                "{what} needs a writable buffer such as a bytearray, not {}",
                type_name(obj)
            ))
        })?;
        let release_with = |err: PyErr| {
            let _ = view.call_method0("release");
            Err(err)
        };
        if view.getattr("readonly")?.is_truthy()? {
            return release_with(PyTypeError::new_err(format!(
                "{what} needs a writable buffer; this {} is read-only",
                type_name(obj)
            )));
        }
        if !view.getattr("c_contiguous")?.is_truthy()? {
            return release_with(PyValueError::new_err(format!(
                "{what} needs a contiguous buffer"
            )));
        }
        let len: usize = view.getattr("nbytes")?.extract()?;
        let (array, addr) = if len == 0 {
            (None, 0)
        } else {
            let ctypes = py.import("ctypes")?;
            let array_type = ctypes.getattr("c_char")?.call_method1("__mul__", (len,))?;
            let array = match array_type.call_method1("from_buffer", (&view,)) {
                Ok(a) => a,
                Err(e) => return release_with(e),
            };
            let addr: usize = ctypes.call_method1("addressof", (&array,))?.extract()?;
            (Some(array.unbind()), addr)
        };
        Ok(Export {
            view: view.into_any().unbind(),
            array,
            addr,
            len,
        })
    }

    /// Zero a writable buffer in a way the optimizer keeps.
    #[pyfunction]
    pub fn wipe(buffer: &Bound<'_, PyAny>) -> PyResult<()> {
        let export = export_writable(buffer, "wipe()")?;
        let (addr, len) = (export.addr, export.len);
        // SAFETY: the export keeps `[addr, addr + len)` alive and writable.
        let wiped = no_panic(|| {
            unsafe { secret::wipe_raw(addr as *mut u8, len) };
            Ok(())
        });
        export.release(buffer.py());
        wiped
    }

    /// A buffer registered with `secret::lock_pages` (locked, or wipe-only when `locked` is
    /// false) and still exported.
    struct Held {
        export: Option<Export>,
        addr: usize,
        len: usize,
        locked: bool,
        /// The fork generation that locked it: a fork child inherits the pages, not the lock.
        generation: u32,
    }

    impl Held {
        fn unlock(&mut self, py: Python<'_>) {
            if let Some(export) = self.export.take() {
                // SAFETY: the range given to `lock_pages`, released once (the export is taken),
                // while the export still keeps it mapped.
                unsafe { secret::unlock_pages(self.addr, self.len) };
                self.locked = false;
                export.release(py);
            }
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            if self.export.is_some() {
                Python::attach(|py| self.unlock(py));
            }
        }
    }

    /// A caller's writable buffer locked in RAM and excluded from core dumps until released.
    #[pyclass(module = "nomyo_native._core", name = "BufferLock")]
    pub struct BufferLock {
        held: Option<Held>,
        size: usize,
    }

    impl BufferLock {
        fn held(&self) -> PyResult<&Held> {
            self.held
                .as_ref()
                .ok_or_else(|| PyValueError::new_err("the buffer lock was released"))
        }
    }

    #[pymethods]
    impl BufferLock {
        #[new]
        fn new(buffer: &Bound<'_, PyAny>) -> PyResult<Self> {
            let export = export_writable(buffer, "BufferLock")?;
            let (addr, len) = (export.addr, export.len);
            // SAFETY: the export keeps the range mapped until `Held` unlocks it.
            let locked = no_panic(|| Ok(unsafe { secret::lock_pages(addr, len) }))?;
            Ok(BufferLock {
                held: Some(Held {
                    export: Some(export),
                    addr,
                    len,
                    locked,
                    generation: secret::fork_generation(),
                }),
                size: len,
            })
        }

        /// True when mlock succeeded in this process (False: wipe-only, released, or
        /// inherited by a fork child, which gets the pages but not their lock).
        #[getter]
        fn locked(&self) -> bool {
            self.held
                .as_ref()
                .is_some_and(|h| h.locked && h.generation == secret::fork_generation())
        }

        #[getter]
        fn size(&self) -> usize {
            self.size
        }

        fn wipe(&self) -> PyResult<()> {
            let held = self.held()?;
            let (addr, len) = (held.addr, held.len);
            // SAFETY: the export keeps `[addr, addr + len)` alive and writable.
            no_panic(|| {
                unsafe { secret::wipe_raw(addr as *mut u8, len) };
                Ok(())
            })
        }

        /// munlock and drop the export (does not wipe). Releasing twice is harmless.
        fn release(&mut self, py: Python<'_>) {
            if let Some(mut held) = self.held.take() {
                held.unlock(py);
            }
        }

        fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
            slf
        }

        #[pyo3(signature = (_exc_type=None, _exc=None, _tb=None))]
        fn __exit__(
            &mut self,
            py: Python<'_>,
            _exc_type: Option<&Bound<'_, PyType>>,
            _exc: Option<&Bound<'_, PyAny>>,
            _tb: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<bool> {
            let wiped = if self.held.is_some() {
                self.wipe()
            } else {
                Ok(())
            };
            self.release(py);
            wiped.map(|_| false)
        }

        fn __repr__(&self) -> String {
            format!("<BufferLock size={} locked={}>", self.size, self.locked())
        }
    }
}

// ---- crypto bindings: ClientKeyPair, ServerPublicKey, seal, open_envelope ----------------------

#[cfg(feature = "python")]
fn register_crypto(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MAX_PLAINTEXT_BYTES", envelope::MAX_PLAINTEXT_BYTES)?;
    m.add("MAX_ENVELOPE_BYTES", envelope::MAX_ENVELOPE_BYTES)?;
    m.add("MIN_RSA_BITS", keys::MIN_RSA_BITS)?;
    m.add_class::<crypto_py::ClientKeyPair>()?;
    m.add_class::<crypto_py::ServerPublicKey>()?;
    m.add_function(wrap_pyfunction!(crypto_py::seal, m)?)?;
    m.add_function(wrap_pyfunction!(crypto_py::open_envelope, m)?)?;
    // The historical name (it shadows the builtin `open` in a star import, hence the rename).
    m.add("open", m.getattr("open_envelope")?)?;
    Ok(())
}

/// Thin wrappers over `keys` and `envelope`: argument conversion, the GIL released around every
/// RSA/AES/KDF operation, and `no_panic` around every entry point.
#[cfg(feature = "python")]
mod crypto_py {
    use std::panic::AssertUnwindSafe;
    use std::path::PathBuf;

    use pyo3::exceptions::{PyTypeError, PyValueError};
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyInt, PyString, PyTuple};

    use crate::error::py::no_panic;
    use crate::secret::LockedBuf;
    use crate::{envelope, json, keys, pystr};

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

    fn password_bytes<'a>(
        password: Option<&'a Bound<'_, PyAny>>,
    ) -> PyResult<Option<Password<'a>>> {
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
        // The envelope is written straight into the returned `bytes` (no second copy).
        let len = envelope::sealed_len(plaintext.len(), key);
        PyBytes::new_with(py, len, |out| {
            py.detach(|| {
                no_panic(AssertUnwindSafe(|| {
                    envelope::seal_into(&mut plaintext, key, out)
                }))
            })
        })
    }

    /// Check, unwrap and decrypt `body`; build the payload straight from locked memory.
    #[pyfunction]
    pub fn open_envelope<'py>(
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
