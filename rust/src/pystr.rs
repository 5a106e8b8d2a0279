//! The UTF-8 of a caller's `str` without leaving a copy in the caller's object.
//!
//! `PyUnicode_AsUTF8AndSize` (pyo3's `to_str`) makes CPython attach a UTF-8 copy to every
//! non-ASCII `str` it is asked for, and that copy lives as long as the caller's object: a
//! request's plaintext or a password would then sit, unwiped, in the caller's heap. Within the
//! stable ABI the abi3 wheel is built for, a non-ASCII `str` is read as UCS-4 into a locked
//! buffer instead (`PyUnicode_AsUCS4`), encoded to UTF-8 into another, and the UCS-4 copy is
//! wiped when it drops. An ASCII `str` is its own UTF-8 (CPython makes no copy for it), so it
//! is borrowed as before. The JSON writer takes the UCS-4 itself (`chars`) and writes the
//! escaped UTF-8 straight into its output (`json_string`); passwords are encoded here (`utf8`).

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::error::CoreError;
use crate::pystr_kind::{self, Kind};
use crate::secret::LockedBuf;

/// The UTF-8 bytes of a `str`: borrowed from an ASCII `str`, or encoded in locked memory.
pub enum Utf8<'a> {
    /// An ASCII `str`'s own bytes (its UTF-8 form), borrowed.
    Ascii(&'a [u8]),
    /// Any other `str`, encoded into locked memory.
    Locked(LockedBuf),
}

impl Utf8<'_> {
    /// The UTF-8 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Utf8::Ascii(bytes) => bytes,
            Utf8::Locked(buf) => buf.as_slice(),
        }
    }
}

/// Why a `str` has no UTF-8 form here.
pub enum StrError {
    /// A lone surrogate (`"\ud800"`): not encodable as UTF-8.
    LoneSurrogate,
    /// Longer than `max_bytes` characters (its UTF-8 is at least that long).
    TooLong,
    /// Locked memory could not be allocated.
    Memory(CoreError),
    /// Python refused to hand out the characters.
    Python(PyErr),
}

/// A `str`'s characters as the core reads them: an ASCII `str`'s own bytes, borrowed, or any
/// other `str`'s code points as native-endian UCS-4 in locked memory (wiped when dropped).
pub enum Chars<'a> {
    /// An ASCII `str`'s own bytes (its UTF-8 form), borrowed.
    Ascii(&'a [u8]),
    /// Any other `str`: 4 bytes per code point, as `PyUnicode_AsUCS4` writes them.
    Ucs4(LockedBuf),
}

/// What kind of `str` the core is reading: an ASCII one is its own UTF-8, any other one is
/// read as code points (`read_ucs4`).
pub enum Text<'a> {
    /// An ASCII `str`'s own bytes (its UTF-8 form), borrowed.
    Ascii(&'a [u8]),
    /// Any other `str`, of this many code points.
    Wide(usize),
}

/// Whether `s` is ASCII (then its bytes, borrowed) and otherwise how many code points it has;
/// refused when it has more than `max_chars` of them.
pub fn text<'a>(s: &'a Bound<'_, PyString>, max_chars: usize) -> Result<Text<'a>, StrError> {
    let py = s.py();
    // str.isascii itself, not a subclass's override.
    let ascii = py
        .get_type::<PyString>()
        .call_method1(intern!(py, "isascii"), (s,))
        .and_then(|r| r.is_truthy())
        .map_err(StrError::Python)?;
    if ascii {
        // No cache is made for an ASCII str: its data already is its UTF-8.
        let text = s.to_str().map_err(StrError::Python)?;
        if text.len() > max_chars {
            return Err(StrError::TooLong);
        }
        return Ok(Text::Ascii(text.as_bytes()));
    }
    // SAFETY: `s` is a live str.
    let chars = unsafe { ffi::PyUnicode_GetLength(s.as_ptr()) };
    let chars = usize::try_from(chars).map_err(|_| StrError::Python(PyErr::fetch(py)))?;
    if chars > max_chars {
        return Err(StrError::TooLong);
    }
    Ok(Text::Wide(chars))
}

/// Copy the code points of `s` into `dst` (native-endian UCS-4, as `PyUnicode_AsUCS4` writes
/// them), which must be 4-byte aligned and exactly 4 bytes per code point of `s` long (the
/// caller's locked memory: no other copy is made).
pub fn read_ucs4(s: &Bound<'_, PyString>, dst: &mut [u8]) -> Result<(), StrError> {
    let misfit = || {
        StrError::Memory(CoreError::Memory(
            "misfit buffer for a str's code points".into(),
        ))
    };
    if dst.as_ptr().align_offset(4) != 0 || !dst.len().is_multiple_of(4) {
        return Err(misfit());
    }
    // SAFETY: `s` is a live str.
    let chars = unsafe { ffi::PyUnicode_GetLength(s.as_ptr()) };
    if usize::try_from(chars).ok() != Some(dst.len() / 4) {
        return Err(misfit());
    }
    if chars > 0 {
        // SAFETY: `dst` has room for exactly `chars` code points, aligned; no NUL is appended.
        let filled = unsafe {
            ffi::PyUnicode_AsUCS4(
                s.as_ptr(),
                dst.as_mut_ptr().cast::<ffi::Py_UCS4>(),
                chars,
                0,
            )
        };
        if filled.is_null() {
            return Err(StrError::Python(PyErr::fetch(s.py())));
        }
    }
    Ok(())
}

/// The characters of `s`, refused when it has more than `max_chars` of them.
pub fn chars<'a>(s: &'a Bound<'_, PyString>, max_chars: usize) -> Result<Chars<'a>, StrError> {
    let chars = match text(s, max_chars)? {
        Text::Ascii(bytes) => return Ok(Chars::Ascii(bytes)),
        Text::Wide(chars) => chars,
    };
    let bytes = chars.checked_mul(4).ok_or(StrError::TooLong)?;
    // Every byte is overwritten by the copy below: no need to zero megabytes first. A buffer
    // of exactly `bytes` ends at a page boundary, so its start is 4-byte aligned.
    let mut ucs4 = LockedBuf::for_overwrite(bytes).map_err(StrError::Memory)?;
    read_ucs4(s, ucs4.as_mut_slice())?;
    Ok(Chars::Ucs4(ucs4))
}

/// The UTF-8 of `s`, refused when it has more than `max_bytes` characters.
pub fn utf8<'a>(s: &'a Bound<'_, PyString>, max_bytes: usize) -> Result<Utf8<'a>, StrError> {
    let ucs4 = match chars(s, max_bytes)? {
        Chars::Ascii(bytes) => return Ok(Utf8::Ascii(bytes)),
        Chars::Ucs4(ucs4) => ucs4,
    };
    // Encoded straight into a buffer of the largest size it can take, then cut to length.
    let mut out = LockedBuf::zeroed(ucs4.len()).map_err(StrError::Memory)?;
    let dst = out.as_mut_slice();
    let mut len = 0;
    for unit in ucs4.as_slice().chunks_exact(4) {
        let code = u32::from_ne_bytes([unit[0], unit[1], unit[2], unit[3]]);
        let Some(c) = char::from_u32(code) else {
            return Err(StrError::LoneSurrogate);
        };
        len += c.encode_utf8(&mut dst[len..]).len();
    }
    out.truncate(len);
    // `ucs4` is wiped as it drops here; `out` is wiped when the caller drops it.
    Ok(Utf8::Locked(out))
}

/// A `str` of the Latin-1 bytes `text` (each byte the code point of its character), built at
/// its exact size by `PyUnicode_DecodeLatin1`, which no byte can fail.
pub fn from_latin1<'py>(py: Python<'py>, text: &[u8]) -> PyResult<Bound<'py, PyString>> {
    // SAFETY: pointer and length describe `text`; a NULL `errors` is "strict", which never
    // fires on Latin-1.
    let obj = unsafe {
        ffi::PyUnicode_DecodeLatin1(
            text.as_ptr().cast(),
            text.len() as ffi::Py_ssize_t,
            std::ptr::null(),
        )
    };
    // SAFETY: a new reference or NULL with an exception set.
    let obj = unsafe { Bound::from_owned_ptr_or_err(py, obj)? };
    obj.cast_into::<PyString>().map_err(PyErr::from)
}

/// A `str` of the native-endian UTF-16 `units` (no surrogate among them), built at its exact
/// size by `PyUnicode_DecodeUTF16` with the byte order given, so that a leading U+FEFF is a
/// character, not a byte order mark.
fn from_utf16<'py>(py: Python<'py>, units: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let mut order: std::ffi::c_int = if cfg!(target_endian = "big") { 1 } else { -1 };
    // SAFETY: pointer and length describe `units`; a NULL `errors` is "strict", which never
    // fires without surrogates; `order` is a valid int the call may write.
    let obj = unsafe {
        ffi::PyUnicode_DecodeUTF16(
            units.as_ptr().cast(),
            units.len() as ffi::Py_ssize_t,
            std::ptr::null(),
            &mut order,
        )
    };
    // SAFETY: a new reference or NULL with an exception set.
    let obj = unsafe { Bound::from_owned_ptr_or_err(py, obj)? };
    obj.cast_into::<PyString>().map_err(PyErr::from)
}

/// A `str` of the `wchar_t`s `json_wide::decode_wide` decoded into `buf` (`wide.units` of
/// them, `json_wide::UNIT_BYTES` each, native-endian, at its start; the caller's locked memory),
/// built straight from `buf` by the fastest constructor CPython offers for them, `buf` narrowed
/// in place first where that is the faster route:
/// - every character below U+0100: Latin-1 bytes, `PyUnicode_DecodeLatin1`;
/// - where `PyUnicode_FromKindAndData` is found (`pystr_kind`: CPython outside Windows), every
///   other text with one copy: the code points as they are, or, all in the BMP, narrowed to
///   two bytes each (CPython then stops looking at the first beyond Latin-1: 440k Hangul and
///   CJK characters 0.02 ms plus the narrowing, against 0.28 ms through
///   `PyUnicode_FromWideChar`; 645k of mixed text with emoji 0.06 ms against 0.41);
/// - without it, every character below U+8000 (Greek, Cyrillic, the Latin extensions,
///   typographic quotes and dashes, the euro sign, kana and part of CJK): UTF-16,
///   `PyUnicode_DecodeUTF16`, which copies a machine word of such units at a time (645k Greek
///   characters 0.09 ms, against 0.40 through `PyUnicode_FromWideChar`'s scan and copy),
///   allocating the `str` at its exact size (no unit is a surrogate, so none is joined and
///   nothing is shrunk at the end). Like the UTF-8 decoder CPython builds short raw strings
///   with (and every raw string on CPUs without the vector steps), it writes a leading run of
///   ASCII or Latin-1 into a narrower buffer of its own first and copies it over as it widens:
///   that buffer is freed as the finished `str` will be, unwiped, neither being memory the core
///   can wipe;
/// - without it, any other text: the `wchar_t`s as they are (UTF-16 on Windows, whose pairs
///   CPython joins; code points elsewhere) through `PyUnicode_FromWideChar`, which keeps lone
///   surrogates as Python's `json` does. From U+8000 on CPython's UTF-16 decoder goes a unit at
///   a time (0.70 ms for 645k Hangul characters), and for text beyond the BMP it allocates
///   again for each wider kind of character it meets and shrinks at the end: a fresh `mmap`
///   and a page fault per 4 KiB on every call (measured: 632 faults, 1.1 ms, per 1 MiB prompt
///   of mixed scripts).
///
/// No route meets a character it refuses, so no UnicodeDecodeError, which would hold a `bytes`
/// copy of its input, is raised. `PyUnicode_FromKindAndData` keeps every code point as it is,
/// lone surrogates included, as `PyUnicode_FromWideChar` does with code points.
pub fn from_wide<'py>(
    py: Python<'py>,
    buf: &mut [u8],
    wide: &crate::json_wide::Wide,
) -> PyResult<Bound<'py, PyString>> {
    use crate::json_wide::{narrow_to_latin1, narrow_to_utf16, UNIT_BYTES};
    const { assert!(UNIT_BYTES == std::mem::size_of::<libc::wchar_t>()) };
    let units = wide.units;
    let misfit = || PyErr::new::<pyo3::exceptions::PyValueError, _>("misfit wchar_t buffer");
    let bytes = units.checked_mul(UNIT_BYTES).ok_or_else(misfit)?;
    if buf.len() < bytes {
        return Err(misfit());
    }
    if wide.bits < 0x100 {
        narrow_to_latin1::<UNIT_BYTES>(buf, units);
        return from_latin1(py, &buf[..units]);
    }
    if let Some(from_kind) = pystr_kind::found().filter(|_| UNIT_BYTES == 4) {
        // The OR of the code points: every one in the BMP (lone surrogates included).
        if wide.bits < 0x1_0000 {
            narrow_to_utf16::<UNIT_BYTES>(buf, units);
            return from_kind.build(py, Kind::Ucs2, &buf[..2 * units]);
        }
        return from_kind.build(py, Kind::Ucs4, &buf[..bytes]);
    }
    // The OR of the units: every one below 0x8000, none a surrogate.
    if wide.bits < 0x8000 {
        narrow_to_utf16::<UNIT_BYTES>(buf, units);
        return from_utf16(py, &buf[..2 * units]);
    }
    // `buf` starts at a page boundary.
    let ptr = buf.as_ptr();
    if ptr.align_offset(std::mem::align_of::<libc::wchar_t>()) != 0 {
        return Err(misfit());
    }
    // SAFETY: `units` aligned native-endian `wchar_t`s at `ptr`, in `buf`, alive here.
    let obj = unsafe { ffi::PyUnicode_FromWideChar(ptr.cast(), units as ffi::Py_ssize_t) };
    // SAFETY: a new reference or NULL with an exception set.
    let obj = unsafe { Bound::from_owned_ptr_or_err(py, obj)? };
    obj.cast_into::<PyString>().map_err(PyErr::from)
}
