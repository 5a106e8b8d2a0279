//! `nomyo_native._core._testing`: probes the test suite uses to look inside the core.
//!
//! Compiled only with the cargo feature `testing` (the test build, `make build-test`), never
//! into the wheel: `probe_overflow` writes past the end of a buffer on purpose, and the others
//! expose what release code keeps private (locked buffers filled in the core, the exact JSON
//! `seal` encrypts, the pool). Stub: `tests/stubs/nomyo_native/_core/_testing.pyi`.

use std::panic::AssertUnwindSafe;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyModule, PyTuple};

use crate::error::py::no_panic;
use crate::error::CoreError;
use crate::secret::{self, LockedBuf};

/// Largest `LockedProbe`: enough to exceed RLIMIT_MEMLOCK, small enough for a test box.
const MAX_PROBE_BYTES: usize = 256 * 1024 * 1024;

/// Add `_testing` to `_core`, importable as `nomyo_native._core._testing` too.
pub fn register(core: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = core.py();
    let m = PyModule::new(py, "_testing")?;
    m.add_class::<LockedProbe>()?;
    m.add_function(wrap_pyfunction!(probe_overflow, &m)?)?;
    m.add_function(wrap_pyfunction!(release_pool, &m)?)?;
    m.add_function(wrap_pyfunction!(locked_memory_initialised, &m)?)?;
    m.add_function(wrap_pyfunction!(json_roundtrip, &m)?)?;
    m.add_function(wrap_pyfunction!(json_digest, &m)?)?;
    m.add_function(wrap_pyfunction!(json_loads, &m)?)?;
    m.add_function(wrap_pyfunction!(panic_with, &m)?)?;
    m.add_function(wrap_pyfunction!(use_stable_str_constructors, &m)?)?;
    m.add_function(wrap_pyfunction!(str_from_kind_and_data, &m)?)?;
    m.add_function(wrap_pyfunction!(str_written_in_place, &m)?)?;
    m.add_function(wrap_pyfunction!(strs_written_in_place, &m)?)?;
    m.add_function(wrap_pyfunction!(plaintext_copies_bounced, &m)?)?;
    m.add_function(wrap_pyfunction!(keep_rustls_records, &m)?)?;
    m.add_function(wrap_pyfunction!(tls_sessions_taken_over, &m)?)?;
    m.add_function(wrap_pyfunction!(last_in_place_cut, &m)?)?;
    // An attribute, not `add_submodule`, which would also list it in `_core.__all__`: the probes
    // are private and test-only, so `_core`'s public names (and its stub) are the same in the
    // release and the test build. The attribute alone does not make it importable: `import a.b.c`
    // looks in sys.modules, and pickling and reprs use the qualified name.
    core.setattr("_testing", &m)?;
    let name = "nomyo_native._core._testing";
    m.setattr("__name__", name)?;
    py.import("sys")?.getattr("modules")?.set_item(name, &m)?;
    Ok(())
}

/// Free the wiped buffers kept for reuse; returns the bytes released.
#[pyfunction]
fn release_pool() -> PyResult<usize> {
    no_panic(|| Ok(secret::release_pool()))
}

/// Panic inside `no_panic` with `message` as the panic's message, as a bug on data would: the
/// caller sees the opaque crypto error, and stderr where it happened but not `message`.
#[pyfunction]
fn panic_with(message: &str) -> PyResult<()> {
    no_panic(AssertUnwindSafe(|| -> Result<(), CoreError> {
        panic!("{message}")
    }))
}

/// True when locked memory's one-time set-up has run (module initialisation does it).
#[pyfunction]
fn locked_memory_initialised() -> bool {
    secret::initialised()
}

/// Fill a buffer with a reproducible, non-zero-heavy pattern (splitmix64 of `seed`).
fn fill_pattern(data: &mut [u8], seed: u64) {
    let mut state = seed;
    for chunk in data.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

fn hex_sha256(data: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A LockedBuf filled inside the core, for tests of locking, dump exclusion and wiping.
#[pyclass(module = "nomyo_native._core._testing", name = "LockedProbe")]
struct LockedProbe {
    buf: Option<LockedBuf>,
    size: usize,
    address: usize,
}

#[pymethods]
impl LockedProbe {
    #[new]
    fn new(size: usize, seed: u64) -> PyResult<Self> {
        if size > MAX_PROBE_BYTES {
            return Err(PyValueError::new_err(format!(
                "a probe holds at most {MAX_PROBE_BYTES} bytes"
            )));
        }
        let buf = no_panic(|| {
            let mut buf = LockedBuf::zeroed(size)?;
            fill_pattern(buf.as_mut_slice(), seed);
            Ok(buf)
        })?;
        let address = buf.as_ptr() as usize;
        Ok(LockedProbe {
            buf: Some(buf),
            size,
            address,
        })
    }

    #[getter]
    fn address(&self) -> usize {
        self.address
    }

    #[getter]
    fn size(&self) -> usize {
        self.size
    }

    #[getter]
    fn locked(&self) -> bool {
        self.buf.as_ref().is_some_and(LockedBuf::is_locked)
    }

    fn pattern_digest(&self) -> PyResult<String> {
        let buf = self
            .buf
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("the probe was released"))?;
        no_panic(AssertUnwindSafe(|| Ok(hex_sha256(buf.as_slice()))))
    }

    /// Drop (wipe and free) the LockedBuf now.
    fn release(&mut self) {
        self.buf = None;
    }
}

/// Allocate a LockedBuf and write `past_end` bytes beyond its end: must crash the process.
#[pyfunction]
fn probe_overflow(size: usize, past_end: usize) -> PyResult<()> {
    if size > MAX_PROBE_BYTES {
        return Err(PyValueError::new_err(format!(
            "a probe holds at most {MAX_PROBE_BYTES} bytes"
        )));
    }
    let buf = LockedBuf::zeroed(size)?;
    let base = buf.as_ptr().cast_mut();
    for i in 0..past_end {
        // SAFETY: deliberately out of bounds; the guard page makes this fault.
        unsafe { std::ptr::write_volatile(base.wrapping_add(size + i), 0xA5) };
    }
    drop(buf);
    Ok(())
}

fn serialize(obj: &Bound<'_, PyAny>, max_len: Option<usize>) -> PyResult<LockedBuf> {
    let max_len = max_len.unwrap_or(crate::envelope::MAX_PLAINTEXT_BYTES);
    no_panic(AssertUnwindSafe(|| {
        let mut out = LockedBuf::with_capacity(0)?;
        crate::json::write_py(obj, &mut out, max_len)?;
        Ok::<_, CoreError>(out)
    }))
}

/// serialize `obj` into locked memory and parse it back.
#[pyfunction]
#[pyo3(signature = (obj, max_len=None))]
fn json_roundtrip<'py>(
    obj: &Bound<'py, PyAny>,
    max_len: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut buf = serialize(obj, max_len)?;
    let py = obj.py();
    no_panic(AssertUnwindSafe(|| {
        crate::json::read_py(py, buf.as_mut_slice())
    }))
}

/// (hex SHA-256, length) of the JSON `seal` would encrypt for `obj`.
#[pyfunction]
#[pyo3(signature = (obj, max_len=None))]
fn json_digest<'py>(
    obj: &Bound<'py, PyAny>,
    max_len: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    let buf = serialize(obj, max_len)?;
    let digest = no_panic(AssertUnwindSafe(|| Ok(hex_sha256(buf.as_slice()))))?;
    PyTuple::new(
        obj.py(),
        [
            digest.into_pyobject(obj.py())?.into_any(),
            buf.len().into_pyobject(obj.py())?.into_any(),
        ],
    )
}

/// Build every `str` with the stable ABI's constructors (`true`), or with
/// `PyUnicode_FromKindAndData` and in place (`pystr_fresh`) where they are found (`false`, the
/// default).
#[pyfunction]
fn use_stable_str_constructors(only: bool) {
    crate::pystr_kind::set_disabled(only);
}

/// Whether the reader builds `str`s with `PyUnicode_FromKindAndData` now.
#[pyfunction]
fn str_from_kind_and_data() -> bool {
    crate::pystr_kind::found().is_some()
}

/// Whether the reader may decode a long string beyond the BMP straight into its `str` now.
#[pyfunction]
fn str_written_in_place(py: Python<'_>) -> bool {
    crate::pystr_fresh::available(py)
}

/// How many `str`s the reader has finished in place (the probe's own included).
#[pyfunction]
fn strs_written_in_place() -> usize {
    crate::pystr_fresh::FINISHED.load(std::sync::atomic::Ordering::Relaxed)
}

/// How many record copies `TlsSession` made into callers' buffers through the scratch that keeps
/// them out of the slow page offsets (`page_offset_copy`).
#[pyfunction]
fn plaintext_copies_bounced() -> usize {
    crate::tls::PLAINTEXT_BOUNCES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Keep rustls's record layer for every session (`true`) or let the core's take TLS 1.3
/// sessions over after their first answer (`false`, the default); returns the previous setting.
#[pyfunction]
fn keep_rustls_records(keep: bool) -> bool {
    crate::tls::KEEP_RUSTLS_RECORDS.swap(keep, std::sync::atomic::Ordering::Relaxed)
}

/// How many sessions the core's record layer took over from rustls (`tls_records`).
#[pyfunction]
fn tls_sessions_taken_over() -> usize {
    crate::tls::SESSIONS_TAKEN_OVER.load(std::sync::atomic::Ordering::Relaxed)
}

/// How many code points the last `str` finished in place was cut by: its room less its length.
#[pyfunction]
fn last_in_place_cut() -> usize {
    crate::pystr_fresh::LAST_CUT.load(std::sync::atomic::Ordering::Relaxed)
}

/// parse JSON bytes with the strict reader `open` uses.
#[pyfunction]
fn json_loads<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    no_panic(AssertUnwindSafe(|| {
        let mut buf = LockedBuf::from_slice(data)?;
        crate::json::read_py(py, buf.as_mut_slice())
    }))
}
