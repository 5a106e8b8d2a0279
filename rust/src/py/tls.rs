//! TLS bindings: `TlsConfig` (trust anchors, ALPN, the resumption cache) and `TlsSession` (one
//! client connection's record layer, sans I/O), with their exceptions `TlsError` and
//! `TlsCertificateError`. Large `receive`/`send` calls run with the GIL released; no panic
//! crosses into Python (a panicking session is failed for good).

#![forbid(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::byte_buffer::{BodyBytes, WritableBytes};
use super::filled_bytes::bytes_filled_by;
use crate::tls::{self, TlsFailure};

pyo3::create_exception!(
    nomyo_native._core,
    TlsError,
    PyException,
    "A TLS failure (handshake, protocol, alert, bad record); the text is rustls's, never key \
     material or plaintext."
);
pyo3::create_exception!(
    nomyo_native._core,
    TlsCertificateError,
    TlsError,
    "The server's certificate was refused; `reason` is a short stable code (\"UnknownIssuer\", \
     \"NotValidForName\", \"Expired\"...)."
);

/// Calls moving at least this many bytes release the GIL while they decrypt or encrypt.
const DETACH_BYTES: usize = 64 * 1024;

/// The message of a session failed by a panic inside the core (a bug, never the peer's data).
const INTERNAL_FAILURE: &str = "internal error in the TLS session";

fn to_py(py: Python<'_>, failure: TlsFailure) -> PyErr {
    match failure {
        TlsFailure::Certificate { reason, message } => {
            let error = TlsCertificateError::new_err(message);
            if let Err(e) = error.value(py).setattr("reason", reason) {
                return e;
            }
            error
        }
        TlsFailure::Protocol(message) => TlsError::new_err(message),
    }
}

/// The failure of a session a panic ended.
fn poisoned() -> TlsFailure {
    TlsFailure::Protocol(INTERNAL_FAILURE.to_owned())
}

/// Run `f` on the session, turning a panic into a failure that ends the session.
fn guarded<T>(
    session: &mut tls::TlsSession,
    f: impl FnOnce(&mut tls::TlsSession) -> Result<T, TlsFailure>,
) -> Result<T, TlsFailure> {
    match catch_unwind(AssertUnwindSafe(|| f(session))) {
        Ok(result) => result,
        Err(_) => Err(session.poison(INTERNAL_FAILURE)),
    }
}

/// Trust anchors and protocol settings of one client, shared by its sessions (and their
/// session-resumption cache). Build once per trust store: parsing costs milliseconds.
#[pyclass(module = "nomyo_native._core", frozen)]
pub struct TlsConfig(tls::TlsConfig);

#[pymethods]
impl TlsConfig {
    #[new]
    #[pyo3(signature = (roots_pem, alpn = None))]
    fn new(
        py: Python<'_>,
        roots_pem: &Bound<'_, PyAny>,
        alpn: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let pem = BodyBytes::extract(roots_pem)
            .map_err(|_| PyTypeError::new_err("roots_pem must be bytes"))?;
        let alpn = match alpn {
            None => vec![b"http/1.1".to_vec()],
            Some(protocols) => alpn_list(protocols)?,
        };
        let pem = pem.as_slice();
        let built = py.detach(|| {
            catch_unwind(AssertUnwindSafe(|| tls::TlsConfig::new(pem, alpn)))
                .unwrap_or_else(|_| Err(tls::TlsSetupError(INTERNAL_FAILURE.to_owned())))
        });
        built
            .map(Self)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// The trust anchors in use.
    #[getter]
    fn root_count(&self) -> usize {
        self.0.root_count()
    }
}

/// ALPN protocol names: a sequence of non-empty bytes of at most 255 bytes each.
fn alpn_list(protocols: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    if protocols.is_instance_of::<PyBytes>() || protocols.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "alpn must be a sequence of bytes, not a single bytes or str",
        ));
    }
    let mut list = Vec::new();
    for item in protocols.try_iter()? {
        let item = item?;
        let name = item
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("every ALPN protocol name must be bytes"))?
            .as_bytes();
        if name.is_empty() || name.len() > 255 {
            return Err(PyValueError::new_err(
                "an ALPN protocol name must be 1 to 255 bytes long",
            ));
        }
        list.push(name.to_vec());
    }
    Ok(list)
}

/// One client connection's TLS record layer, sans I/O: the caller moves the socket's bytes
/// in (`receive`) and out (`take_tls`), and the application data in (`send`) and out
/// (`read_into`).
#[pyclass(module = "nomyo_native._core")]
pub struct TlsSession(tls::TlsSession);

#[pymethods]
impl TlsSession {
    #[new]
    fn new(py: Python<'_>, config: &Bound<'_, TlsConfig>, server_name: &str) -> PyResult<Self> {
        let name = tls::server_name(server_name).map_err(|e| PyValueError::new_err(e.0))?;
        let config = &config.get().0;
        let created = catch_unwind(AssertUnwindSafe(|| tls::TlsSession::new(config, name)))
            .unwrap_or_else(|_| Err(TlsFailure::Protocol(INTERNAL_FAILURE.to_owned())));
        created.map(Self).map_err(|e| to_py(py, e))
    }

    /// Take TLS bytes read from the socket (all of them); returns the plaintext now waiting.
    fn receive(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let data = BodyBytes::extract(data)?;
        let bytes = data.as_slice();
        let session = &mut self.0;
        let result = if bytes.len() >= DETACH_BYTES {
            py.detach(|| guarded(session, |s| s.receive(bytes)))
        } else {
            guarded(session, |s| s.receive(bytes))
        };
        result.map_err(|e| to_py(py, e))
    }

    /// `receive`, with the plaintext moved into `buffer` as it is decrypted (what was waiting
    /// first); returns the bytes written there (the rest waits for `read_into`). A failure
    /// raises with `written`, the bytes written into `buffer` before it (authentic).
    fn receive_into(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        buffer: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let data = BodyBytes::extract(data)?;
        let mut out = WritableBytes::extract(buffer)?;
        let bytes = data.as_slice();
        if out.overlaps(bytes) {
            return Err(PyValueError::new_err(
                "data and buffer must not share memory",
            ));
        }
        let out = out.as_mut_slice();
        let session = &mut self.0;
        let mut written = 0;
        let mut run = || {
            let result = guarded(session, |s| s.receive_into(bytes, out, &mut written));
            if session.failure().is_some_and(|f| *f == poisoned()) {
                written = 0; // nothing a panicking session decrypted is handed over
            }
            result
        };
        let result = if bytes.len() >= DETACH_BYTES {
            py.detach(run)
        } else {
            run()
        };
        match result {
            Ok(()) => Ok(written),
            Err(failure) => {
                let error = to_py(py, failure);
                error.value(py).setattr("written", written)?;
                Err(error)
            }
        }
    }

    /// Move waiting plaintext into `buffer`; returns the bytes written.
    fn read_into(&mut self, py: Python<'_>, buffer: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut out = WritableBytes::extract(buffer)?;
        guarded(&mut self.0, |s| s.read_into(out.as_mut_slice())).map_err(|e| to_py(py, e))
    }

    /// Plaintext bytes waiting for `read_into`.
    #[getter]
    fn plaintext_pending(&self) -> usize {
        self.0.plaintext_pending()
    }

    /// Encrypt application data into the TLS output (TlsError before the handshake ends).
    fn send(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = BodyBytes::extract(data)?;
        let bytes = data.as_slice();
        let session = &mut self.0;
        let result = if bytes.len() >= DETACH_BYTES {
            py.detach(|| guarded(session, |s| s.send(bytes)))
        } else {
            guarded(session, |s| s.send(bytes))
        };
        result.map_err(|e| to_py(py, e))
    }

    /// The TLS bytes to write now (b"" if none), built straight into the returned bytes.
    fn take_tls<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let session = &mut self.0;
        bytes_filled_by(py, session.tls_pending(), |out| {
            guarded(session, |s| s.take_tls_into(out)).map_err(|e| to_py(py, e))
        })
    }

    /// Bytes `take_tls` would return.
    #[getter]
    fn tls_pending(&self) -> usize {
        self.0.tls_pending()
    }

    /// Queue close_notify (idempotent).
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        guarded(&mut self.0, |s| s.close()).map_err(|e| to_py(py, e))
    }

    #[getter]
    fn handshaking(&self) -> bool {
        self.0.handshaking()
    }

    /// The peer's close_notify was received.
    #[getter]
    fn peer_closed(&self) -> bool {
        self.0.peer_closed()
    }

    /// Whose record layer carries the records: "rustls" (the handshake, the first answer, TLS
    /// 1.2) or "core" (the core's own TLS 1.3 records after that).
    #[getter]
    fn record_layer(&self) -> &'static str {
        self.0.record_layer()
    }

    /// "TLSv1.3" or "TLSv1.2" once negotiated.
    #[getter]
    fn protocol_version(&self) -> Option<&'static str> {
        self.0.protocol_version()
    }

    /// The negotiated cipher suite's IANA name.
    #[getter]
    fn cipher_suite(&self) -> Option<&'static str> {
        self.0.cipher_suite()
    }

    /// The secret bits of the negotiated bulk cipher (128 or 256).
    #[getter]
    fn cipher_bits(&self) -> Option<u32> {
        self.0.cipher_bits()
    }

    /// The protocol the server chose by ALPN.
    #[getter]
    fn alpn_protocol(&self) -> Option<String> {
        self.0
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// The server's leaf certificate, DER.
    fn peer_certificate<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.0.peer_certificate().map(|der| PyBytes::new(py, der))
    }
}

/// Expose the exception classes on `_core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("TlsError", py.get_type::<TlsError>())?;
    m.add("TlsCertificateError", py.get_type::<TlsCertificateError>())?;
    Ok(())
}
