//! A response body borrowed from Python for one call, without a copy: `bytes`, or any
//! read-only view of C-contiguous unsigned bytes (a `bytearray` the HTTP layer received the
//! body into, a `memoryview` of either).
//!
//! While the buffer export is held its exporter cannot be resized or freed (CPython refuses to
//! resize a `bytearray` with exports), so the slice stays valid with the GIL released. As for
//! `hashlib`, which also reads a `bytearray` with the GIL released, the caller must not write
//! to a mutable buffer while the call runs: the bytes read would then be unspecified (the
//! body fails its checks), never out of bounds.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// The body's bytes for the duration of one call.
pub enum BodyBytes<'py> {
    /// Immutable `bytes`: read in place, nothing exported.
    Bytes(Bound<'py, PyBytes>),
    /// A buffer export, released (with the GIL held) when this is dropped.
    Buffer(PyBuffer<u8>),
}

impl<'py> BodyBytes<'py> {
    /// `obj` as bytes, or a TypeError naming what is accepted (never the content).
    pub fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(bytes) = obj.cast::<PyBytes>() {
            return Ok(Self::Bytes(bytes.clone()));
        }
        let refused = || {
            PyTypeError::new_err(
                "body must be bytes, a bytearray or a contiguous memoryview of bytes",
            )
        };
        let buffer = PyBuffer::<u8>::get(obj).map_err(|_| refused())?;
        if !buffer.is_c_contiguous() {
            return Err(refused());
        }
        Ok(Self::Buffer(buffer))
    }

    /// The bytes, valid as long as `self` (and so the export) lives.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Self::Bytes(bytes) => bytes.as_bytes(),
            Self::Buffer(buffer) => {
                let len = buffer.len_bytes();
                if len == 0 {
                    return &[];
                }
                // SAFETY: the export is C-contiguous (checked in `extract`) and of `u8` items,
                // so `len_bytes` bytes start at `buf_ptr`, non-null for a non-empty buffer; the
                // export keeps them allocated and unresizable until `buffer` is dropped, and the
                // slice borrows `self`, so it cannot outlive the export.
                unsafe { std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), len) }
            }
        }
    }
}

/// A caller's writable buffer (a `bytearray`, a writable contiguous `memoryview`) exported for
/// one call: it cannot be resized or freed until this is dropped (with the GIL held).
pub struct WritableBytes(PyBuffer<u8>);

impl WritableBytes {
    /// `obj` as a writable buffer, or a TypeError naming what is accepted.
    pub fn extract(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let refused = || {
            PyTypeError::new_err(
                "buffer must be a writable contiguous buffer of bytes, such as a bytearray",
            )
        };
        let buffer = PyBuffer::<u8>::get(obj).map_err(|_| refused())?;
        if buffer.readonly() || !buffer.is_c_contiguous() {
            return Err(refused());
        }
        Ok(Self(buffer))
    }

    /// Whether these bytes share any memory with `other` (without making a slice of them).
    pub fn overlaps(&self, other: &[u8]) -> bool {
        let start = self.0.buf_ptr() as usize;
        let end = start + self.0.len_bytes();
        let other_start = other.as_ptr() as usize;
        let other_end = other_start + other.len();
        start < other_end && other_start < end
    }

    /// The bytes, writable, valid as long as `self` (and so the export) lives.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.0.len_bytes();
        if len == 0 {
            return &mut [];
        }
        // SAFETY: the export is C-contiguous, writable (both checked in `extract`) and of `u8`
        // items, so `len_bytes` bytes start at `buf_ptr`, non-null for a non-empty buffer; the
        // export keeps them allocated and unresizable until `self` is dropped, and the slice
        // borrows `self` mutably, so it is the only Rust reference and cannot outlive the export.
        unsafe { std::slice::from_raw_parts_mut(self.0.buf_ptr().cast::<u8>(), len) }
    }
}
