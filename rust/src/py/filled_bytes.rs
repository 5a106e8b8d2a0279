//! A Python `bytes` of known size, filled by a `Fill` writer without being zeroed first.
//!
//! `PyBytes::new_with` zeroes its buffer before handing it over; for the 1.4 MB envelope of a
//! 1 MiB request and its TLS records that is a pass over the megabytes per request which every
//! byte is then written over. Here the object is only returned once its writer has written all
//! of it: uninitialised memory never reaches Python.

use std::mem::MaybeUninit;

use pyo3::exceptions::PyMemoryError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::fill::Fill;

/// A `bytes` of `len` bytes, all written by `write`; an error when `write` fails or leaves any
/// byte unwritten (the object is then freed without ever being seen).
pub fn bytes_filled_by<'py>(
    py: Python<'py>,
    len: usize,
    write: impl FnOnce(&mut Fill<'_>) -> PyResult<()>,
) -> PyResult<Bound<'py, PyBytes>> {
    let size = ffi::Py_ssize_t::try_from(len)
        .map_err(|_| PyMemoryError::new_err("the output is too large"))?;
    // SAFETY: with a null source CPython allocates `len` bytes (plus its terminating NUL) and
    // leaves them uninitialised; the object is ours alone until returned.
    let bytes = unsafe {
        let object = ffi::PyBytes_FromStringAndSize(std::ptr::null(), size);
        Bound::from_owned_ptr_or_err(py, object)?.cast_into_unchecked::<PyBytes>()
    };
    // SAFETY: a `bytes` object's buffer holds `len` bytes and lives as long as the object,
    // which `bytes` keeps alive past every use of the slice; nothing else refers to it yet.
    let buffer = unsafe {
        let data = ffi::PyBytes_AsString(bytes.as_ptr()).cast::<MaybeUninit<u8>>();
        std::slice::from_raw_parts_mut(data, len)
    };
    let mut fill = Fill::new(buffer);
    write(&mut fill)?;
    if !fill.is_full() {
        return Err(PyMemoryError::new_err(
            "internal error: the output was not filled",
        ));
    }
    Ok(bytes)
}
