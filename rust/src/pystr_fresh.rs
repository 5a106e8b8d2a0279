//! A new `str` of code points whose characters are written in place: the JSON reader decodes a
//! long string that holds a character beyond the BMP straight into the `str` it returns,
//! instead of into a locked buffer that `PyUnicode_FromKindAndData` copies from (a quarter of a
//! millisecond per 2.7 MB of code points: 3% of a 1 MiB non-ASCII request's client CPU).
//!
//! Allocating a `str` with `PyUnicode_New` and writing its characters before anyone else sees
//! it is how CPython's own decoders build strings: public C API, outside the limited API the
//! abi3 wheel is built against, so looked up as `pystr_kind` looks up its constructor. Where the
//! characters lie is `PyUnicode_DATA`, a macro over the object's layout: just past the header of
//! a compact `str`, 72 bytes up to CPython 3.11 and 56 from 3.12 on (64-bit builds). That is
//! taken only after a probe `str` has shown it here, first by reading only (the length, hash and
//! kind where the header keeps them, `__sizeof__`, the terminating NUL just past the
//! characters), then by writing code points there and having CPython read them back
//! (`PyUnicode_ReadChar`, equality with the same text built by `PyUnicode_FromKindAndData`,
//! `PyUnicode_Resize`). Anything else (another layout, such as a debug build's longer object
//! header; 32-bit builds; Windows, where the functions are not found) keeps the copy.
//!
//! The characters are plaintext in the interpreter's heap from the first one written, as the
//! finished `str` is anyway: what is not handed over (a string the decoder refuses half-way,
//! the room past its end) is wiped before the memory goes back.

use pyo3::prelude::*;
use pyo3::types::PyString;

/// `PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)`.
#[cfg(all(unix, target_pointer_width = "64"))]
type PyUnicodeNew = unsafe extern "C" fn(pyo3::ffi::Py_ssize_t, u32) -> *mut pyo3::ffi::PyObject;

/// Where this interpreter keeps a compact UCS-4 `str`'s characters, and its `PyUnicode_New`.
#[derive(Clone, Copy)]
#[cfg_attr(not(all(unix, target_pointer_width = "64")), allow(dead_code))]
struct Layout {
    #[cfg(all(unix, target_pointer_width = "64"))]
    new: PyUnicodeNew,
    /// Bytes from the object's start to its first character.
    data: usize,
}

/// The layout, where it is known and shown here (probed once).
fn layout(py: Python<'_>) -> Option<Layout> {
    if crate::pystr_kind::disabled() {
        return None;
    }
    static FOUND: std::sync::OnceLock<Option<Layout>> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| probe(py))
}

#[cfg(not(all(unix, target_pointer_width = "64")))]
fn probe(_py: Python<'_>) -> Option<Layout> {
    None
}

#[cfg(all(unix, target_pointer_width = "64"))]
fn probe(py: Python<'_>) -> Option<Layout> {
    let version = py.version_info();
    let data = match (version.major, version.minor) {
        (3, 9..=11) => 72,
        (3, 12..) => 56,
        _ => return None,
    };
    let found = crate::pystr_kind::interpreter_symbol(c"PyUnicode_New")?;
    // SAFETY: the interpreter's `PyUnicode_New`, `PyObject *(Py_ssize_t, Py_UCS4)` in every
    // CPython 3.
    let new = unsafe { std::mem::transmute::<*mut std::ffi::c_void, PyUnicodeNew>(found) };
    let layout = Layout { new, data };
    shown(py, layout).then_some(layout)
}

#[cfg(all(unix, target_pointer_width = "64"))]
/// Code points of the probe: every width, both ends of the range, a lone surrogate.
const PROBE: [u32; 12] = [
    0x1F510, 0x41, 0xE9, 0x3B5, 0x6F22, 0xD800, 0x10FFFF, 0x0, 0xFFFF, 0x10000, 0xDC00, 0x7F,
];

/// Whether a probe `str` shows `layout`: read-only checks first, so that nothing is written
/// where the object might not hold it.
#[cfg(all(unix, target_pointer_width = "64"))]
fn shown(py: Python<'_>, layout: Layout) -> bool {
    use pyo3::ffi;
    let units = PROBE.len() * 3;
    let Ok(Some(mut fresh)) = FreshUcs4::with_layout(py, layout, units) else {
        return false;
    };
    let base = fresh
        .obj
        .as_ref()
        .map_or(std::ptr::null(), |o| o.as_ptr().cast::<u8>());
    // `__sizeof__` of a compact str without a UTF-8 copy: its header and characters, NUL
    // included. Checked first: the reads below lie within the header it counts.
    let sized = fresh.obj.as_ref().and_then(|o| {
        o.call_method0(pyo3::intern!(py, "__sizeof__"))
            .and_then(|s| s.extract::<usize>())
            .ok()
    });
    if base.is_null() || sized != Some(layout.data + 4 * (units + 1)) {
        return false;
    }
    // SAFETY: offsets 16 to 40 lie inside the object's header (its size checked above), as do
    // the NUL's 4 bytes at `data + 4 * units`; unaligned reads of plain integers.
    let (length, hash, state, nul) = unsafe {
        (
            base.add(16).cast::<isize>().read_unaligned(),
            base.add(24).cast::<isize>().read_unaligned(),
            base.add(32).cast::<u32>().read_unaligned(),
            base.add(layout.data + 4 * units)
                .cast::<u32>()
                .read_unaligned(),
        )
    };
    // The state's bit fields: interned (2), kind (3), compact (1), ascii (1).
    let (kind, compact, ascii) = ((state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1);
    if length != units as isize || hash != -1 || (kind, compact, ascii) != (4, 1, 0) || nul != 0 {
        return false;
    }
    let expected: Vec<u32> = PROBE.iter().cycle().take(units).copied().collect();
    for (unit, code) in fresh.bytes_mut().chunks_exact_mut(4).zip(&expected) {
        unit.copy_from_slice(&code.to_ne_bytes());
    }
    let kept = units - 5;
    let Ok(s) = fresh.finish(kept) else {
        return false;
    };
    // SAFETY: `s` is a live str; indices below its length.
    let read_back = (0..kept).all(|k| unsafe {
        ffi::PyUnicode_ReadChar(s.as_ptr(), k as ffi::Py_ssize_t) == expected[k]
    });
    let bytes: Vec<u8> = expected[..kept]
        .iter()
        .flat_map(|c| c.to_ne_bytes())
        .collect();
    let same = crate::pystr_kind::found()
        .and_then(|from| from.build(py, crate::pystr_kind::Kind::Ucs4, &bytes).ok())
        .is_some_and(|built| built.as_any().eq(s.as_any()).unwrap_or(false));
    PyErr::take(py);
    s.len().ok() == Some(kept) && read_back && same
}

/// `str`s finished in place since the module was loaded (tests see the route taken).
#[cfg(feature = "testing")]
pub static FINISHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Code points the last `str` finished in place was cut by (tests see the room was exact).
#[cfg(feature = "testing")]
pub static LAST_CUT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether this interpreter's `str`s can be written in place here (probed once).
pub fn available(py: Python<'_>) -> bool {
    layout(py).is_some()
}

/// A new UCS-4 `str` being written: its characters, then `finish`. Dropped unfinished, its
/// characters are wiped and it is released.
pub struct FreshUcs4<'py> {
    obj: Option<Bound<'py, PyAny>>,
    data: *mut u8,
    units: usize,
}

impl<'py> FreshUcs4<'py> {
    /// A `str` of `units` code points to write (at least one must be beyond the BMP by
    /// `finish`: CPython keeps a UCS-4 `str` only for such text); `None` where the layout is not
    /// known here.
    pub fn new(py: Python<'py>, units: usize) -> PyResult<Option<Self>> {
        match layout(py) {
            Some(layout) => Self::with_layout(py, layout, units),
            None => Ok(None),
        }
    }

    #[cfg(not(all(unix, target_pointer_width = "64")))]
    fn with_layout(_py: Python<'py>, _layout: Layout, _units: usize) -> PyResult<Option<Self>> {
        Ok(None)
    }

    #[cfg(all(unix, target_pointer_width = "64"))]
    fn with_layout(py: Python<'py>, layout: Layout, units: usize) -> PyResult<Option<Self>> {
        let size = pyo3::ffi::Py_ssize_t::try_from(units)
            .map_err(|_| pyo3::exceptions::PyMemoryError::new_err("string too long"))?;
        // SAFETY: the GIL is held (`py`); 0x10FFFF asks for a UCS-4 str.
        let obj = unsafe { (layout.new)(size, 0x10_FFFF) };
        // SAFETY: a new reference or NULL with an exception set.
        let obj = unsafe { Bound::from_owned_ptr_or_err(py, obj)? };
        // SAFETY: a compact UCS-4 str's characters start `layout.data` bytes into the object
        // (shown by the probe); `units` of 4 bytes, plus the NUL.
        let data = unsafe { obj.as_ptr().cast::<u8>().add(layout.data) };
        Ok(Some(Self {
            obj: Some(obj),
            data,
            units,
        }))
    }

    /// The characters' bytes, 4 per code point, native-endian.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        if self.obj.is_none() {
            return &mut [];
        }
        // SAFETY: the str is alive (held in `obj`) and only this value has it; its characters
        // are `units` * 4 bytes from `data`.
        unsafe { std::slice::from_raw_parts_mut(self.data, 4 * self.units) }
    }

    /// The finished `str` of the first `len` code points written (`len <= units`): the room
    /// past them is wiped first, then given back (`PyUnicode_Resize`, which also writes the NUL
    /// that ends the characters).
    pub fn finish(mut self, len: usize) -> PyResult<Bound<'py, PyString>> {
        use zeroize::Zeroize;
        let misfit = || pyo3::exceptions::PyValueError::new_err("misfit str length");
        if len > self.units {
            return Err(misfit());
        }
        self.bytes_mut()[4 * len..].zeroize();
        let obj = self.obj.take().ok_or_else(misfit)?;
        let py = obj.py();
        let mut ptr = obj.into_ptr();
        // SAFETY: `ptr` is a new str with one reference (ours), never hashed nor interned, so
        // CPython resizes it in place or moves it; `len` fits (at most `units`).
        let resized =
            unsafe { pyo3::ffi::PyUnicode_Resize(&mut ptr, len as pyo3::ffi::Py_ssize_t) };
        if resized != 0 {
            // SAFETY: a failed resize leaves the str as it was, still ours; its characters are
            // wiped before it goes.
            unsafe {
                std::slice::from_raw_parts_mut(self.data, 4 * len).zeroize();
                pyo3::ffi::Py_DECREF(ptr);
            }
            return Err(PyErr::fetch(py));
        }
        // SAFETY: the resized str, a new reference.
        let obj = unsafe { Bound::from_owned_ptr(py, ptr) };
        #[cfg(feature = "testing")]
        {
            FINISHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            LAST_CUT.store(self.units - len, std::sync::atomic::Ordering::Relaxed);
        }
        obj.cast_into::<PyString>().map_err(PyErr::from)
    }
}

impl Drop for FreshUcs4<'_> {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.bytes_mut().zeroize();
        // `obj` is released after this.
    }
}
