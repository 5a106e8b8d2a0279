//! Envelope bindings: `seal` (JSON straight into locked memory, then the hybrid envelope) and
//! `open_envelope` (check, unwrap, decrypt, and build the payload from locked memory).

#![forbid(unsafe_code)]

use std::panic::AssertUnwindSafe;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use super::byte_buffer::BodyBytes;
use super::keys::{ClientKeyPair, ServerPublicKey};
use crate::error::py::no_panic;
use crate::secret::LockedBuf;
use crate::{envelope, json};

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
    // bytes, or the bytearray the HTTP layer received the body into: read in place.
    let body = BodyBytes::extract(body)?;
    let bytes = body.as_slice();
    let kp = &keypair.get().0;
    let opened = py.detach(|| no_panic(AssertUnwindSafe(|| envelope::open(bytes, kp))))?;
    drop(body);
    let mut plaintext = opened.plaintext;
    let payload = no_panic(AssertUnwindSafe(|| json::read_py(py, &mut plaintext)))?;
    drop(plaintext);
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
