//! Memory bindings: `memory_status`, `wipe` and `BufferLock` (a caller's buffer locked in RAM).

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
/// ctypes array over it for the address, through stable calls only. (Chosen while the abi3
/// floor was CPython 3.10, whose limited API has no buffer-protocol calls; since the floor is
/// 3.11, pyo3's `PyBuffer` is available under abi3 as well.)
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
    let wiped = no_panic(|| {
        // SAFETY: the export keeps `[addr, addr + len)` alive and writable.
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
        no_panic(|| {
            // SAFETY: the export (held until `release`) keeps `[addr, addr + len)` alive and
            // writable.
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
