//! Envelope bindings: `seal` (JSON straight into locked memory, then the hybrid envelope) and
//! `open_envelope` (check, unwrap, decrypt, and build the payload from locked memory), or the
//! same in two calls, `decrypt_envelope` and `OpenedEnvelope.build`, for a caller that picks
//! the thread of the build by its cost.

#![forbid(unsafe_code)]

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use super::byte_buffer::BodyBytes;
use super::filled_bytes::bytes_filled_by;
use super::keys::{ClientKeyPair, ServerPublicKey};
use crate::error::py::no_panic;
use crate::secret::LockedBuf;
use crate::{envelope, json, json_scan};

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
    // The envelope is written straight into the returned `bytes` (no second copy, no zeroing).
    let len = envelope::sealed_len(plaintext.len(), key);
    bytes_filled_by(py, len, |out| {
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
    built(py, decrypted(py, body, keypair)?)
}

/// Check, unwrap and decrypt `body`, counting the plaintext's build cost up to `cost_limit`;
/// the payload is built later, by `OpenedEnvelope.build`.
#[pyfunction]
pub fn decrypt_envelope<'py>(
    py: Python<'py>,
    body: &Bound<'py, PyAny>,
    keypair: &Bound<'py, ClientKeyPair>,
    cost_limit: usize,
) -> PyResult<OpenedEnvelope> {
    // Plaintext past which the count lets the GIL go (~25 us of counting).
    const COUNT_DETACHED: usize = 256 * 1024;
    let opened = decrypted(py, body, keypair)?;
    let plaintext = opened.plaintext.as_slice();
    // Without the escapes too, once they are what takes the count past the limit (a server
    // that escapes non-ASCII text writes one every few bytes).
    let count = || {
        let build_cost = json_scan::build_cost(plaintext, cost_limit);
        let structure_cost = if build_cost > cost_limit {
            json_scan::structure_cost(plaintext, cost_limit)
        } else {
            build_cost
        };
        (build_cost, structure_cost)
    };
    let (build_cost, structure_cost) = if plaintext.len() > COUNT_DETACHED {
        py.detach(count)
    } else {
        count()
    };
    Ok(OpenedEnvelope {
        plaintext_bytes: plaintext.len(),
        build_cost,
        structure_cost,
        opened: Mutex::new(Some(opened)),
    })
}

/// A response envelope checked, unwrapped and decrypted (`decrypt_envelope`): its plaintext
/// stays in locked memory until `build` makes the payload of it, once, or until it drops
/// (wiped either way). So that a caller can see what the build will cost before it decides
/// where to run it.
#[pyclass(module = "nomyo_native._core", name = "OpenedEnvelope", frozen)]
pub struct OpenedEnvelope {
    opened: Mutex<Option<envelope::Opened>>,
    plaintext_bytes: usize,
    build_cost: usize,
    structure_cost: usize,
}

#[pymethods]
impl OpenedEnvelope {
    /// Bytes of the plaintext JSON.
    #[getter]
    fn plaintext_bytes(&self) -> usize {
        self.plaintext_bytes
    }

    /// A bound on the build's work beyond copying strings (`json_scan::build_cost`: brackets,
    /// separators, backslashes, long numbers' digits), counted up to `decrypt_envelope`'s
    /// `cost_limit`: a figure above it says only "more".
    #[getter]
    fn build_cost(&self) -> usize {
        self.build_cost
    }

    /// `build_cost` without the backslashes (`json_scan::structure_cost`: brackets, separators,
    /// long numbers' digits), the build's work beyond its strings, counted up to
    /// `decrypt_envelope`'s `cost_limit`; `build_cost` itself when that is within the limit.
    #[getter]
    fn structure_cost(&self) -> usize {
        self.structure_cost
    }

    /// Build the payload's Python objects from the plaintext, which is then wiped:
    /// `(payload, processed_at, algorithm)`, as `open_envelope` returns. Once only.
    fn build<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        built(py, self.take()?)
    }

    /// `build` within `seconds`, or `None` once it would take longer (`json::read_py_within`):
    /// what was built is dropped and the plaintext, untouched, kept for `build` (on another
    /// thread, say).
    fn build_within<'py>(
        &self,
        py: Python<'py>,
        seconds: f64,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(PyValueError::new_err(
                "seconds must be a finite number from 0 on",
            ));
        }
        let mut opened = self.take()?;
        // Past a year is no deadline anyone waits for (and `Instant` cannot overflow then).
        let deadline = Instant::now() + Duration::from_secs_f64(seconds.min(3.2e7));
        let payload = no_panic(AssertUnwindSafe(|| {
            json::read_py_within(py, opened.plaintext.as_mut_slice(), deadline)
        }))?;
        match payload {
            Some(payload) => finish(py, payload, opened).map(Some),
            None => {
                if let Ok(mut slot) = self.opened.lock() {
                    *slot = Some(opened);
                }
                Ok(None)
            }
        }
    }

    fn __repr__(&self) -> String {
        // Taken by `build`, which either built the payload or failed (the plaintext wiped);
        // `build_within` puts it back when it gives up.
        let taken = self.opened.lock().map(|o| o.is_none()).unwrap_or(true);
        let state = if taken { "consumed" } else { "not built" };
        format!("<OpenedEnvelope {} bytes, {state}>", self.plaintext_bytes)
    }
}

impl OpenedEnvelope {
    /// The decrypted envelope, out of this object (a build has it, once).
    fn take(&self) -> PyResult<envelope::Opened> {
        let taken = self.opened.lock().ok().and_then(|mut opened| opened.take());
        taken.ok_or_else(|| {
            PyValueError::new_err(
                "this envelope's payload was already built (or its build failed): once only",
            )
        })
    }
}

/// `body` checked, unwrapped and decrypted, without the GIL.
fn decrypted<'py>(
    py: Python<'py>,
    body: &Bound<'py, PyAny>,
    keypair: &Bound<'py, ClientKeyPair>,
) -> PyResult<envelope::Opened> {
    // bytes, or the bytearray the HTTP layer received the body into: read in place.
    let body = BodyBytes::extract(body)?;
    let bytes = body.as_slice();
    let kp = &keypair.get().0;
    let opened = py.detach(|| no_panic(AssertUnwindSafe(|| envelope::open(bytes, kp))))?;
    drop(body);
    Ok(opened)
}

/// The payload's Python objects built from `opened`'s plaintext (wiped as it drops here), with
/// the envelope's `processed_at` and `algorithm`.
fn built<'py>(py: Python<'py>, mut opened: envelope::Opened) -> PyResult<Bound<'py, PyTuple>> {
    let payload = no_panic(AssertUnwindSafe(|| {
        json::read_py(py, opened.plaintext.as_mut_slice())
    }))?;
    finish(py, payload, opened)
}

/// `(payload, processed_at, algorithm)` of a built envelope, its plaintext wiped first.
fn finish<'py>(
    py: Python<'py>,
    payload: Bound<'py, PyAny>,
    opened: envelope::Opened,
) -> PyResult<Bound<'py, PyTuple>> {
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
