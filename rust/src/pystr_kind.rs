//! A `str` built from code points by `PyUnicode_FromKindAndData`, CPython's constructor for
//! characters of one width, found in the running interpreter at run time.
//!
//! The stable ABI's constructors each look at every character on their own before or while
//! they copy it: `PyUnicode_FromWideChar` scans the code points one at a time for the largest
//! (0.41 ms for 645k characters of mixed text with emoji, nine tenths of it the scan), the
//! UTF-16 and UTF-32 decoders go a unit at a time beyond U+8000. `PyUnicode_FromKindAndData`
//! ORs four code points at a time and stops looking at the first one beyond the BMP, then
//! copies the rest as it is (0.06 ms for the same text; all-BMP text 0.09-0.13 ms against
//! 0.28). It is public C API, but not in the limited API the abi3 wheel is built against, so
//! the wheel does not link it: it is looked up once with `dlsym` in this process, and taken
//! only where it lies in the same interpreter as the stable-ABI functions this module is
//! linked to (every CPython from 3.3 on exports it, with the same signature and kind values).
//! Where it is not found (Windows, whose `python3.dll` forwards the stable ABI only; an
//! interpreter embedded out of `dlsym`'s sight) callers keep the stable-ABI constructors.
//!
//! CPython does not check the code points after the first beyond the BMP: callers pass only
//! what the JSON decoder wrote (Unicode scalar values and lone surrogates, at most U+10FFFF).

#[cfg(unix)]
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

#[cfg(unix)]
type FromKindAndData = unsafe extern "C" fn(
    std::ffi::c_int,
    *const std::ffi::c_void,
    ffi::Py_ssize_t,
) -> *mut ffi::PyObject;

/// Tests turn the constructor off to exercise the stable-ABI routes on this interpreter too.
#[cfg(feature = "testing")]
static DISABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Take the stable-ABI constructors only (`true`), or this one where it is found (`false`).
#[cfg(feature = "testing")]
pub fn set_disabled(disabled: bool) {
    DISABLED.store(disabled, std::sync::atomic::Ordering::Relaxed);
}

/// Whether tests turned the non-limited functions off (`set_disabled`).
pub(crate) fn disabled() -> bool {
    #[cfg(feature = "testing")]
    if DISABLED.load(std::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    false
}

/// The address of the public CPython function `name`, where `dlsym` finds it in the very
/// interpreter this module runs in: the symbols `dlsym` sees are that interpreter's only if
/// they hold the stable-ABI function the module is linked to.
#[cfg(unix)]
pub(crate) fn interpreter_symbol(name: &std::ffi::CStr) -> Option<*mut std::ffi::c_void> {
    // SAFETY: `dlsym` with RTLD_DEFAULT and NUL-terminated names only reads the process's
    // symbol tables.
    let (found, linked) = unsafe {
        (
            libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()),
            libc::dlsym(libc::RTLD_DEFAULT, c"PyUnicode_FromWideChar".as_ptr()),
        )
    };
    let ours = ffi::PyUnicode_FromWideChar as *const std::ffi::c_void;
    (!found.is_null() && linked.cast_const() == ours).then_some(found)
}

#[cfg(unix)]
fn constructor() -> Option<FromKindAndData> {
    if disabled() {
        return None;
    }
    static FOUND: std::sync::OnceLock<Option<FromKindAndData>> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        let found = interpreter_symbol(c"PyUnicode_FromKindAndData")?;
        // SAFETY: the interpreter's `PyUnicode_FromKindAndData`, whose C signature is
        // `PyObject *(int kind, const void *buffer, Py_ssize_t size)` in every CPython 3.
        Some(unsafe { std::mem::transmute::<*mut std::ffi::c_void, FromKindAndData>(found) })
    })
}

/// `PyUnicode_FromKindAndData`, where it is found: `found()`.
#[derive(Clone, Copy)]
pub struct FromKind {
    #[cfg(unix)]
    build: FromKindAndData,
}

/// The width of the characters `FromKind::build` is given: its `PyUnicode_*_KIND` is their
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Py_UCS2`: code points below U+10000, two bytes each.
    Ucs2 = 2,
    /// `Py_UCS4`: any code point, four bytes each.
    Ucs4 = 4,
}

/// The constructor, where this interpreter has it (looked up once).
pub fn found() -> Option<FromKind> {
    #[cfg(unix)]
    {
        constructor().map(|build| FromKind { build })
    }
    #[cfg(not(unix))]
    {
        None
    }
}

impl FromKind {
    /// A `str` of the native-endian code points `units` (`kind`'s bytes each, aligned to
    /// them, at most U+10FFFF each; surrogates are kept as they are, none joined), built with
    /// one copy.
    pub fn build<'py>(
        self,
        py: Python<'py>,
        kind: Kind,
        units: &[u8],
    ) -> PyResult<Bound<'py, PyString>> {
        let width = kind as usize;
        if units.as_ptr().align_offset(width) != 0 || !units.len().is_multiple_of(width) {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "misfit code point buffer",
            ));
        }
        #[cfg(unix)]
        {
            let count = (units.len() / width) as ffi::Py_ssize_t;
            // SAFETY: the GIL is held (`py`); `count` aligned code points of `width` bytes at
            // the pointer (a slice holds at most isize::MAX bytes), alive for the call, which
            // copies them; `kind` is their PyUnicode kind.
            let obj =
                unsafe { (self.build)(kind as std::ffi::c_int, units.as_ptr().cast(), count) };
            // SAFETY: a new reference or NULL with an exception set.
            let obj = unsafe { Bound::from_owned_ptr_or_err(py, obj)? };
            obj.cast_into::<PyString>().map_err(PyErr::from)
        }
        #[cfg(not(unix))]
        {
            // Never reached: `found` makes no `FromKind` here.
            let _ = py;
            Err(pyo3::exceptions::PyValueError::new_err(
                "no PyUnicode_FromKindAndData here",
            ))
        }
    }
}
