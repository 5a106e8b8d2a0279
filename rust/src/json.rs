//! Python objects <-> JSON bytes, written straight into and read straight out of a `LockedBuf`.
//!
//! `write_py` walks the caller's objects and appends compact JSON to a LockedBuf; it produces
//! the same bytes as `json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
//! allow_nan=False)`, so the server sees exactly what the reference client would send. No
//! serialized plaintext is ever held outside locked memory: single numbers pass through small
//! stack buffers that are wiped, and an integer beyond 64 bits through CPython's own
//! `int.__repr__` string (a copy of that one number, as `json.dumps` makes).
//!
//! `read_py` is a strict RFC 8259 parser that builds Python objects directly; escaped strings are
//! decoded in place in the locked buffer it reads. Errors name the problem, the byte offset and
//! the path (`json_path`: protocol field names and positions), never content.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyRecursionError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use zeroize::Zeroize;

use crate::error::{CoreError, CoreResult};
use crate::json_path::{self, Step as PathStep};
use crate::json_scan::{plain_prefix, plain_run, scan_number, MAX_INT_DIGITS};
use crate::json_string::{self, EscapeStop, UnescapeError};
use crate::json_wide;
use crate::latin1_avx512;
use crate::pystr::{StrError, Text};
use crate::pystr_fresh;
use crate::secret::LockedBuf;

pub use crate::envelope::MAX_JSON_DEPTH;

/// Smallest buffer the writer grows to: most requests fit without a second allocation.
const INITIAL_CAPACITY: usize = 16 * 1024;

// ---- writer ------------------------------------------------------------------------------------

/// Serialize a Python value as JSON into `out` (compact: no spaces), refusing once `out` would
/// exceed `max_len` bytes (CoreError::RequestTooLarge, before any encryption happens).
pub fn write_py(obj: &Bound<'_, PyAny>, out: &mut LockedBuf, max_len: usize) -> CoreResult<()> {
    let mut writer = Writer { out, max_len };
    writer.value(obj, 0).map_err(|e| e.into_core(max_len))
}

/// Why a value could not be written; the path is collected while the error unwinds, so the
/// success path pays nothing for it.
enum Fault {
    NotJson(String),
    BadKey(String),
    NonFinite,
    LoneSurrogate,
    TooDeep,
    TooLarge,
    Memory(CoreError),
    Python(String),
}

struct WriteError {
    fault: Fault,
    /// Innermost step first.
    path: Vec<PathStep>,
}

impl From<Fault> for WriteError {
    fn from(fault: Fault) -> Self {
        WriteError {
            fault,
            path: Vec::new(),
        }
    }
}

impl WriteError {
    fn at(mut self, step: PathStep) -> Self {
        self.path.push(step);
        self
    }

    fn into_core(self, max_len: usize) -> CoreError {
        let path = json_path::render(self.path.iter().rev().copied());
        match self.fault {
            Fault::NotJson(t) => CoreError::NotJson(format!(
                "{path}: object of type {t} is not JSON serializable"
            )),
            Fault::BadKey(t) => CoreError::NotJson(format!(
                "{path}: dict keys must be str, int, float, bool or None, not {t}"
            )),
            Fault::NonFinite => CoreError::InvalidArgument(format!(
                "{path}: NaN and Infinity are not allowed in JSON"
            )),
            Fault::LoneSurrogate => CoreError::InvalidArgument(format!(
                "{path}: string contains a lone surrogate and cannot be encoded as UTF-8"
            )),
            Fault::TooDeep => CoreError::InvalidArgument(format!(
                "{path}: nesting deeper than {MAX_JSON_DEPTH} levels"
            )),
            Fault::TooLarge => CoreError::RequestTooLarge(format!(
                "the serialized payload exceeds the limit of {max_len} bytes"
            )),
            Fault::Memory(e) => e,
            Fault::Python(kind) => CoreError::InvalidArgument(format!(
                "{path}: value could not be serialized ({kind})"
            )),
        }
    }
}

/// A dict member as an error path shows it: its key only when that is a protocol field name
/// (`json_path`), else its position. The key is compared in place: an ASCII str's own bytes,
/// no copy of it, and never `to_str()` of a non-ASCII one, which would cache a UTF-8 copy in
/// the caller's key (issue 10 finding 4); a key that is no str is never a field name.
fn member_step(key: &Bound<'_, PyAny>, index: usize, count: usize) -> PathStep {
    PathStep::Member {
        key: key.cast::<PyString>().ok().and_then(protocol_name),
        ordinal: index + 1,
        of: Some(count),
    }
}

/// The protocol field name `key` is, if it is one (`json_path`), read in place.
fn protocol_name(key: &Bound<'_, PyString>) -> Option<&'static str> {
    match crate::pystr::text(key, json_path::MAX_PROTOCOL_KEY_LEN) {
        Ok(Text::Ascii(bytes)) => json_path::protocol_key(bytes),
        _ => None,
    }
}

/// A dict resized while it was written. (Not a `Fault` variant of its own: one more variant
/// made every `Result<(), Fault>` of the writer costlier to return and drop, +4% in write_py.)
#[cold]
fn dict_changed() -> Fault {
    Fault::Python("the dict changed size while it was being serialized".into())
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from("?"))
}

fn python_fault(err: &PyErr, py: Python<'_>) -> Fault {
    Fault::Python(
        err.get_type(py)
            .name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|_| String::from("error")),
    )
}

struct Writer<'b> {
    out: &'b mut LockedBuf,
    max_len: usize,
}

impl Writer<'_> {
    fn put(&mut self, data: &[u8]) -> Result<(), Fault> {
        self.make_room(data.len())?;
        self.out.extend_from_slice(data).map_err(Fault::Memory)
    }

    /// Capacity for `additional` more bytes, refused past `max_len`.
    fn make_room(&mut self, additional: usize) -> Result<(), Fault> {
        let needed = self
            .out
            .len()
            .checked_add(additional)
            .ok_or(Fault::TooLarge)?;
        if needed > self.max_len {
            return Err(Fault::TooLarge);
        }
        if needed > self.out.capacity() {
            // Grow geometrically (with slack after one big write, so that the closing bytes
            // fit), but never past the cap: a 10 MiB payload allocates <= 10 MiB.
            let target = needed
                .saturating_add(needed / 4)
                .max(self.out.capacity().saturating_mul(2))
                .max(INITIAL_CAPACITY)
                .min(self.max_len);
            self.out
                .reserve_exact(target - self.out.len())
                .map_err(Fault::Memory)?;
        }
        Ok(())
    }

    fn value(&mut self, obj: &Bound<'_, PyAny>, depth: usize) -> Result<(), WriteError> {
        if let Ok(s) = obj.cast::<PyString>() {
            return Ok(self.string(s)?);
        }
        if obj.is_none() {
            return Ok(self.put(b"null")?);
        }
        // bool before int: True is an int in Python.
        if let Ok(b) = obj.cast::<PyBool>() {
            return Ok(self.put(if b.is_true() { b"true" } else { b"false" })?);
        }
        if let Ok(i) = obj.cast::<PyInt>() {
            return Ok(self.int(i)?);
        }
        if let Ok(f) = obj.cast::<PyFloat>() {
            return Ok(self.float(f.value())?);
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            return self.dict(d, depth + 1);
        }
        if let Ok(l) = obj.cast::<PyList>() {
            return self.sequence(l.iter(), depth + 1);
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            return self.sequence(t.iter(), depth + 1);
        }
        Err(Fault::NotJson(type_name(obj)).into())
    }

    fn sequence<'py>(
        &mut self,
        items: impl Iterator<Item = Bound<'py, PyAny>>,
        depth: usize,
    ) -> Result<(), WriteError> {
        if depth > MAX_JSON_DEPTH {
            return Err(Fault::TooDeep.into());
        }
        self.put(b"[")?;
        for (index, item) in items.enumerate() {
            if index > 0 {
                self.put(b",")?;
            }
            self.value(&item, depth)
                .map_err(|e| e.at(PathStep::Index(index)))?;
        }
        Ok(self.put(b"]")?)
    }

    fn dict(&mut self, dict: &Bound<'_, PyDict>, depth: usize) -> Result<(), WriteError> {
        if depth > MAX_JSON_DEPTH {
            return Err(Fault::TooDeep.into());
        }
        self.put(b"{")?;
        // Writing a member can run Python code (a finalizer the collector runs when an object
        // is allocated) that resizes the dict: PyO3's iterator would panic at its next step,
        // so the size is checked after each member and a change refused, typed, as json's
        // iterators do (and no more members are taken than the dict had).
        let count = dict.len();
        for (index, (key, value)) in dict.iter().take(count).enumerate() {
            if index > 0 {
                self.put(b",")?;
            }
            let step = |error: WriteError| error.at(member_step(&key, index, count));
            self.key(&key).map_err(|f| step(WriteError::from(f)))?;
            self.put(b":")?;
            self.value(&value, depth).map_err(step)?;
            if dict.len() != count {
                return Err(dict_changed().into());
            }
        }
        Ok(self.put(b"}")?)
    }

    /// Keys are coerced as `json.dumps` does: str as is; int, float, bool, None to their text.
    fn key(&mut self, key: &Bound<'_, PyAny>) -> Result<(), Fault> {
        if let Ok(s) = key.cast::<PyString>() {
            return self.string(s);
        }
        self.put(b"\"")?;
        if key.is_none() {
            self.put(b"null")?;
        } else if let Ok(b) = key.cast::<PyBool>() {
            self.put(if b.is_true() { b"true" } else { b"false" })?;
        } else if let Ok(i) = key.cast::<PyInt>() {
            self.int(i)?;
        } else if let Ok(f) = key.cast::<PyFloat>() {
            self.float(f.value())?;
        } else {
            return Err(Fault::BadKey(type_name(key)));
        }
        self.put(b"\"")
    }

    fn int(&mut self, int: &Bound<'_, PyInt>) -> Result<(), Fault> {
        if let Ok(v) = int.extract::<i64>() {
            return self.display(v);
        }
        if let Ok(v) = int.extract::<u64>() {
            return self.display(v);
        }
        // Beyond 64 bits: int.__repr__ (as json.dumps does, ignoring subclass overrides).
        let py = int.py();
        let text = py
            .get_type::<PyInt>()
            .call_method1("__repr__", (int,))
            .map_err(|e| python_fault(&e, py))?;
        let text = text
            .cast::<PyString>()
            .map_err(|_| Fault::Python("repr".into()))?;
        let digits = text.to_str().map_err(|e| python_fault(&e, py))?;
        self.put(digits.as_bytes())
    }

    fn display(&mut self, value: impl std::fmt::Display) -> Result<(), Fault> {
        let mut text = StackText::new();
        let _ = write!(text, "{value}");
        let result = self.put(text.as_bytes());
        text.wipe();
        result
    }

    /// Python's `float.__repr__`: shortest round-trip digits, exponent form outside 1e-4..1e16.
    fn float(&mut self, value: f64) -> Result<(), Fault> {
        if !value.is_finite() {
            return Err(Fault::NonFinite);
        }
        let mut text = StackText::new();
        python_float_repr(value, &mut text);
        let result = self.put(text.as_bytes());
        text.wipe();
        result
    }

    fn string(&mut self, s: &Bound<'_, PyString>) -> Result<(), Fault> {
        // Never `to_str()`: it would cache a UTF-8 copy in a non-ASCII caller's str (pystr).
        match crate::pystr::text(s, self.max_len).map_err(|e| str_fault(e, s))? {
            Text::Ascii(bytes) => self.ascii_string(bytes),
            Text::Wide(chars) => self.wide_string(s, chars),
        }
    }

    /// A non-ASCII str: its code points are staged in the output's own spare room, just past
    /// the opening quote (where that is 4-byte aligned), and escaped and encoded in place
    /// there, so that they need no locked buffer of their own (for a 1 MiB prompt, 3 MB that
    /// were mapped, locked and freed per request), and the text is not copied again. The
    /// leftover staged bytes are wiped with the output.
    fn wide_string(&mut self, s: &Bound<'_, PyString>, chars: usize) -> Result<(), Fault> {
        let staged = chars.checked_mul(4).ok_or(Fault::TooLarge)?;
        // The opening quote, up to 3 bytes of alignment, the code points, the closing quote.
        let room = staged.checked_add(5).ok_or(Fault::TooLarge)?;
        let needed = self.out.len().checked_add(room).ok_or(Fault::TooLarge)?;
        if needed > self.out.capacity() {
            // Geometrically, as `make_room` grows (doubling up to the cap; the staging room may
            // pass it): an exact fit left no room for the next str, so every non-ASCII str of
            // a long document mapped a new buffer and copied the whole output into it.
            let doubled = self.out.capacity().saturating_mul(2).min(self.max_len);
            let target = needed.max(doubled);
            self.out
                .reserve_exact(target - self.out.len())
                .map_err(Fault::Memory)?;
        }
        let outcome = self
            .out
            .append_with(room, |spare| {
                let outcome = stage_and_escape(s, spare, staged);
                let written = match &outcome {
                    Ok(Staged::Whole(len)) => 1 + len,
                    Ok(Staged::Partly { written, .. }) => 1 + written,
                    Err(_) => 0,
                };
                (written, outcome)
            })
            .map_err(Fault::Memory)??;
        if let Staged::Partly { rest, .. } = outcome {
            // A `\u00XX` escape too early in the text to fit in place: the rest goes through a
            // small stack buffer, wiped after.
            let mut batch = [0u8; 512];
            let result = self.escape_from(&rest, 0, &mut batch);
            batch.zeroize();
            result?;
        }
        if self.out.len() > self.max_len {
            return Err(Fault::TooLarge);
        }
        self.put(b"\"")
    }

    /// Escape the code points of `ucs4` from index `next` on into the output, via `batch`.
    fn escape_from(
        &mut self,
        ucs4: &[u8],
        next: usize,
        batch: &mut [u8; 512],
    ) -> Result<(), Fault> {
        let mut filled = 0;
        for k in next..ucs4.len() / 4 {
            if filled + 6 > batch.len() {
                self.put(&batch[..filled])?;
                filled = 0;
            }
            let code = json_string::code_at(ucs4, k).unwrap_or(0xD800);
            filled += json_string::put_escaped(code, &mut batch[filled..]).map_err(|stop| {
                match stop {
                    EscapeStop::LoneSurrogate => Fault::LoneSurrogate,
                    // Six bytes always fit: checked above.
                    EscapeStop::NoRoom { .. } => {
                        Fault::Memory(CoreError::Memory("the escape batch overflowed".into()))
                    }
                }
            })?;
        }
        self.put(&batch[..filled])
    }

    /// An ASCII str's bytes, escaped where JSON needs it (runs copied whole). A long run is
    /// scanned and copied a window at a time, so that the copy reads what the scan just
    /// brought into the cache (a megabyte prompt was otherwise read from memory twice).
    fn ascii_string(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        const SCAN_WINDOW: usize = 16 * 1024;
        // The output holds at least the bytes and the quotes: room for them at once.
        self.make_room(bytes.len().saturating_add(2))?;
        self.put(b"\"")?;
        let mut i = 0;
        loop {
            let window = &bytes[i..bytes.len().min(i + SCAN_WINDOW)];
            let run = plain_prefix(window);
            self.put(&window[..run])?;
            i += run;
            if run == window.len() && i < bytes.len() {
                // The window was plain to its end: the run goes on in the next one.
                continue;
            }
            // What ends a run is a control character, '"' or '\\' (or the end).
            let Some(&b) = bytes.get(i) else {
                break;
            };
            i += 1;
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                _ => &[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ],
            };
            self.put(escape)?;
        }
        self.put(b"\"")
    }
}

/// Position of the first '"' in `s` at or after `from` (a SIMD search).
fn find_quote(s: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'"', s.get(from..)?).map(|at| from + at)
}

/// A small fixed stack buffer for one number's text, wiped after use.
struct StackText {
    bytes: [u8; 64],
    len: usize,
}

impl StackText {
    fn new() -> Self {
        StackText {
            bytes: [0; 64],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn push(&mut self, b: u8) {
        if self.len < self.bytes.len() {
            self.bytes[self.len] = b;
            self.len += 1;
        }
    }

    fn wipe(&mut self) {
        self.bytes.zeroize();
        self.len = 0;
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.len + s.len() > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

/// Format a finite float exactly as CPython's `repr(float)` does.
fn python_float_repr(value: f64, out: &mut StackText) {
    // `{:e}` gives a shortest round-trip string. When two strings of that length round-trip,
    // CPython takes the one closest to the exact binary value (ties to even): the exact
    // formatting at that precision, used whenever it round-trips (562949953421312.25 is
    // ".2", where Rust's shortest says ".3"; for 2**-24 only "...063" round-trips).
    let mut sci = StackText::new();
    let _ = write!(sci, "{:e}", value.abs());
    let shortest = sci
        .as_bytes()
        .iter()
        .take_while(|&&b| b != b'e')
        .filter(|b| b.is_ascii_digit())
        .count();
    let mut exact = StackText::new();
    let _ = write!(exact, "{:.*e}", shortest.saturating_sub(1), value.abs());
    let round_trips = std::str::from_utf8(exact.as_bytes())
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .is_some_and(|parsed| parsed == value.abs());
    if round_trips {
        std::mem::swap(&mut sci, &mut exact);
    }
    exact.wipe();
    let text = sci.as_bytes();
    let e_at = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
    // Digits of a caller's number: plaintext, so wiped before returning.
    let mut digit_buf = [0u8; 32];
    let mut n_digits = 0;
    for &b in &text[..e_at] {
        if b.is_ascii_digit() && n_digits < digit_buf.len() {
            digit_buf[n_digits] = b;
            n_digits += 1;
        }
    }
    let mut exponent: i32 = 0;
    let mut negative_exp = false;
    for &b in text.get(e_at + 1..).unwrap_or(&[]) {
        match b {
            b'-' => negative_exp = true,
            b'0'..=b'9' => exponent = exponent * 10 + i32::from(b - b'0'),
            _ => {}
        }
    }
    if negative_exp {
        exponent = -exponent;
    }
    sci.wipe();
    let digits = &digit_buf[..n_digits];

    if value.is_sign_negative() {
        out.push(b'-');
    }
    if !(-4..16).contains(&exponent) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            digits[1..].iter().for_each(|&d| out.push(d));
        }
        out.push(b'e');
        out.push(if exponent < 0 { b'-' } else { b'+' });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            out.push(b'0');
        }
        let _ = write!(out, "{magnitude}");
    } else if exponent >= 0 {
        let int_len = exponent as usize + 1;
        for i in 0..int_len {
            out.push(*digits.get(i).unwrap_or(&b'0'));
        }
        out.push(b'.');
        if digits.len() > int_len {
            digits[int_len..].iter().for_each(|&d| out.push(d));
        } else {
            out.push(b'0');
        }
    } else {
        out.push(b'0');
        out.push(b'.');
        for _ in 0..(-exponent - 1) {
            out.push(b'0');
        }
        digits.iter().for_each(|&d| out.push(d));
    }
    digit_buf.zeroize();
}

/// What `stage_and_escape` left in the output's spare room after the opening quote.
enum Staged {
    /// The whole str, escaped: its length.
    Whole(usize),
    /// Its escaped text up to the code point a `\u00XX` escape did not fit in place before
    /// (`written` bytes), and the code points from there on, moved out of the output's way.
    Partly { written: usize, rest: LockedBuf },
}

/// Write the opening quote at `spare[0]`, read the `staged / 4` code points of `s` just past
/// it (4-byte aligned) and escape them in place from `spare[1]` on. A lone surrogate anywhere
/// in `s` is refused before any of it counts as written, so before the size cap (as nomyo's
/// `json.dumps(...).encode()` refuses it).
fn stage_and_escape(
    s: &Bound<'_, PyString>,
    spare: &mut [u8],
    staged: usize,
) -> Result<Staged, Fault> {
    let Some((quote, after)) = spare.split_first_mut() else {
        return Err(staged_misfit());
    };
    *quote = b'"';
    let pad = after.as_ptr().align_offset(4);
    let region = after
        .get_mut(..pad.saturating_add(staged))
        .filter(|_| pad < 4)
        .ok_or_else(staged_misfit)?;
    crate::pystr::read_ucs4(s, &mut region[pad..]).map_err(|e| str_fault(e, s))?;
    match json_string::escape_ucs4_behind(region, pad) {
        Ok(len) => Ok(Staged::Whole(len)),
        Err(EscapeStop::LoneSurrogate) => Err(Fault::LoneSurrogate),
        Err(EscapeStop::NoRoom { written, next }) => {
            if json_string::has_surrogate(&region[pad..], next) {
                return Err(Fault::LoneSurrogate);
            }
            let rest = LockedBuf::from_slice(&region[pad + 4 * next..]).map_err(Fault::Memory)?;
            Ok(Staged::Partly { written, rest })
        }
    }
}

fn staged_misfit() -> Fault {
    Fault::Memory(CoreError::Memory(
        "no aligned room for a str's code points".into(),
    ))
}

/// A `str` the writer could not read, as a fault.
fn str_fault(error: StrError, s: &Bound<'_, PyString>) -> Fault {
    match error {
        StrError::LoneSurrogate => Fault::LoneSurrogate,
        StrError::TooLong => Fault::TooLarge,
        StrError::Memory(e) => Fault::Memory(e),
        StrError::Python(e) => python_fault(&e, s.py()),
    }
}

// ---- reader ------------------------------------------------------------------------------------

/// Parse JSON bytes (from a LockedBuf) straight into Python objects. Strings with escapes are
/// decoded in place, over their raw text in `json` (which is left partly decoded).
pub fn read_py<'py>(py: Python<'py>, json: &mut [u8]) -> CoreResult<Bound<'py, PyAny>> {
    read(py, json, None)
}

/// `read_py` within `deadline`, or `None` (what was built dropped) once it would run past it:
/// for a build on a thread that must not stall longer (an event loop's). The clock is looked at
/// every `DEADLINE_LOOK_BYTES` of input and inside long strings, and a long string whose worst
/// case (its escapes each decoded apart) does not fit in the time left is not begun, so the
/// overrun is a fraction of a millisecond. `json` is left as it was, for a build elsewhere: no
/// string is decoded in place.
pub fn read_py_within<'py>(
    py: Python<'py>,
    json: &mut [u8],
    deadline: Instant,
) -> CoreResult<Option<Bound<'py, PyAny>>> {
    match read(py, json, Some(deadline)) {
        Err(CoreError::OutOfTime) => Ok(None),
        read => read.map(Some),
    }
}

fn read<'py>(
    py: Python<'py>,
    json: &mut [u8],
    deadline: Option<Instant>,
) -> CoreResult<Bound<'py, PyAny>> {
    let mut parser = Parser {
        py,
        s: json,
        pos: 0,
        scratch: LockedBuf::with_capacity(0)?,
        wide: LockedBuf::with_capacity(0)?,
        path: Vec::new(),
        values: 0,
        held_since: Instant::now(),
        deadline,
        looked_at: 0,
    };
    parser.skip_ws();
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.pos != parser.s.len() {
        return Err(parser.fail("unexpected data after the JSON value"));
    }
    Ok(value)
}

/// `json_wide::decode_wide`, looking at the clock every `DEADLINE_LOOK_UNITS` units it writes
/// when a build has a `deadline`: `OutOfTime` once past it (what was written is the caller's
/// to wipe).
fn decode_wide_on_time(
    src: &[u8],
    dst: &mut [u8],
    mut from: json_wide::Progress,
    deadline: Option<Instant>,
) -> CoreResult<Result<json_wide::Wide, json_wide::WideStop>> {
    let Some(deadline) = deadline else {
        return Ok(json_wide::decode_wide(src, dst, from));
    };
    loop {
        let look = (from.written + DEADLINE_LOOK_UNITS).saturating_mul(json_wide::UNIT_BYTES);
        let Some(part) = dst.get_mut(..look) else {
            return Ok(json_wide::decode_wide(src, dst, from));
        };
        // A part full is a look at the clock, not the end of the room: the decoding goes on
        // from where it stopped, into the same buffer.
        match json_wide::decode_wide(src, part, from) {
            Err(json_wide::WideStop::NoRoom(progress)) => {
                if Instant::now() >= deadline {
                    return Err(CoreError::OutOfTime);
                }
                from = progress;
            }
            decoded => return Ok(decoded),
        }
    }
}

struct Parser<'a, 'py> {
    py: Python<'py>,
    /// The JSON text; escaped strings are decoded over their raw text.
    s: &'a mut [u8],
    pos: usize,
    /// A big integer's digits, NUL-terminated for CPython; wiped when the parser drops.
    scratch: LockedBuf,
    /// The `wchar_t`s of a non-ASCII string (`json_wide`), which its `str` is built from
    /// (`pystr::from_wide`), reused from string to string; wiped when the parser drops.
    wide: LockedBuf,
    /// Where the parser is, outermost first: errors name this path, never content.
    path: Vec<Step<'py>>,
    /// Values read so far (wrapping), and when the parser last let the GIL go (`gil_yield`).
    values: u32,
    held_since: Instant,
    /// When a build within a deadline gives up (`read_py_within`), and the input position at
    /// the last look at the clock.
    deadline: Option<Instant>,
    looked_at: usize,
}

/// Raw non-ASCII string bodies from this long are decoded by a vector step where the CPU has
/// one (`latin1_str` for Latin-1 text, `wide_str` beyond it); shorter ones are CPython's, for
/// which they are a few hundred ns either way.
const WIDE_RAW_MIN: usize = 256;
/// Strings from this many bytes of body on may be decoded into their `str` in place
/// (`Parser::wide_str_in_place`), where their first `FIRST_UNITS` code points show one beyond
/// the BMP; shorter ones cost too little to copy for the look.
const IN_PLACE_MIN: usize = 64 * 1024;
const FIRST_UNITS: usize = 16 * 1024;

/// Values between two looks at the clock (about 25 ns each) to see whether the GIL has been
/// held for `GIL_HOLD` (`Parser::gil_yield`).
const VALUES_PER_CLOCK_LOOK: u32 = 4096;

/// How long the reader stays without the GIL when it lets it go: a waiting thread's wake-up
/// (at most 2% of a build that long).
const GIL_AWAY: std::time::Duration = std::time::Duration::from_micros(100);

/// Digits from which an integer's conversion (~1 us and up) is followed by a look at the clock.
const LONG_INTEGER_DIGITS: usize = 256;

/// Input between two looks at the clock of a build within a deadline: at most ~0.5 ms of the
/// dearest text (escapes the reader decodes apart, ~20 ns for two bytes).
const DEADLINE_LOOK_BYTES: usize = 64 * 1024;
/// Code units a long string's decoding writes between two looks at the clock (at most ~0.3
/// ms: a unit from each escape decoded apart).
const DEADLINE_LOOK_UNITS: usize = 16 * 1024;
/// The worst case of a string's decoding in one call, for a build within a deadline to decide
/// whether to begin it: per escape the scalar reader decodes (`\"`, `\u0041`, a lone
/// surrogate: 11-19 ns measured) and per byte of raw text (CPython's UTF-8 decoder on mixed
/// scripts, ~2.2 ns).
const ESCAPE_WORST_NS: u64 = 25;
const BYTE_WORST_NS: u64 = 3;
/// The same for raw ASCII text, a copy (~0.1 ns a byte).
const ASCII_WORST_PS_PER_BYTE: u64 = 500;
/// The usual pace of a long escaped string, which the wide decoder reads looking at the clock
/// (its worst case is the clock's to catch): 0.5-1.3 ns a byte of `\uXXXX` text measured here,
/// with or without the vector step, and the `str`'s writing. A string that would not end in
/// the time left at this pace is not begun: giving up half-way wastes what was decoded.
const ESCAPED_USUAL_PS_PER_BYTE: u64 = 1_500;

/// How long the reader holds the GIL before it lets it go for a moment: CPython's default
/// switch interval. Building is under the GIL (every value is a Python object), and an answer
/// of a million small values (a hostile one, say, of nested empty lists) takes a few hundred
/// ms per MiB: held throughout, it stopped every other thread, the event loop of a request
/// opened on a worker too. A thread waiting for the GIL asks for it after the switch interval
/// unless the GIL changed hands meanwhile; letting go at that pace, no sooner, finds the
/// request made, and CPython then hands the GIL over before taking it back. (Letting go more
/// often resets the waiter's clock each time, and it gets the GIL only when it wins a race.)
const GIL_HOLD: std::time::Duration = std::time::Duration::from_millis(5);

/// One level of the reader's position: an array index, or an object member's position (from 1)
/// and its key once read (shown only if it is a protocol field name, see `json_path`).
enum Step<'py> {
    Index(usize),
    Member {
        // u32 keeps a step two words long (a document under the envelope cap has fewer
        // members; past u32::MAX the count would stop, not wrap).
        ordinal: u32,
        key: Option<Bound<'py, PyString>>,
    },
}

impl<'py> Parser<'_, 'py> {
    fn fail(&self, problem: &str) -> CoreError {
        self.fail_at(problem, self.pos)
    }

    // Cold and out of line: the error text is built once per refused document, and inlined
    // into the loops it made them larger and slower (`built` stopped being inlined).
    #[cold]
    #[inline(never)]
    fn fail_at(&self, problem: &str, pos: usize) -> CoreError {
        let path = self.path_text();
        CoreError::Envelope(format!(
            "invalid JSON payload: {problem} at byte {pos} (path {path})"
        ))
    }

    /// The current position as `$.choices[0].message...` (`json_path`); a member whose key is
    /// not read yet (the error is in the key) shows as its position, as any other non-protocol
    /// key does.
    fn path_text(&self) -> String {
        json_path::render(self.path.iter().map(|step| match step {
            Step::Index(i) => PathStep::Index(*i),
            Step::Member { ordinal, key } => PathStep::Member {
                key: key.as_ref().and_then(protocol_name),
                ordinal: *ordinal as usize,
                of: None,
            },
        }))
    }

    #[inline]
    fn built<T>(&self, r: PyResult<T>) -> CoreResult<T> {
        r.map_err(|e| self.build_failed(&e))
    }

    #[cold]
    #[inline(never)]
    fn build_failed(&self, error: &PyErr) -> CoreError {
        if error.is_instance_of::<PyRecursionError>(self.py) {
            self.fail("nesting too deep for the interpreter")
        } else {
            self.fail("could not build the Python value")
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> CoreResult<Bound<'py, PyAny>> {
        self.values = self.values.wrapping_add(1);
        if self.values.is_multiple_of(VALUES_PER_CLOCK_LOOK) {
            self.gil_yield();
            self.on_time()?;
        } else if self.deadline.is_some() && self.pos - self.looked_at >= DEADLINE_LOOK_BYTES {
            self.on_time()?;
        }
        match self.s.get(self.pos) {
            None => Err(self.fail("unexpected end of data")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(self.string()?.into_any()),
            Some(b't') => self.literal(b"true", PyBool::new(self.py, true).to_owned().into_any()),
            Some(b'f') => self.literal(b"false", PyBool::new(self.py, false).to_owned().into_any()),
            Some(b'n') => self.literal(b"null", self.py.None().into_bound(self.py)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'N' | b'I') => Err(self.fail("NaN and Infinity are not valid JSON")),
            Some(_) => Err(self.fail("unexpected character")),
        }
    }

    /// `OutOfTime` once a build within a deadline is past it.
    fn on_time(&mut self) -> CoreResult<()> {
        self.looked_at = self.pos;
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(CoreError::OutOfTime),
            _ => Ok(()),
        }
    }

    /// `OutOfTime` when a build within a deadline has less than `ns` left: work that cannot
    /// look at the clock (one call) is not begun unless its worst case fits.
    fn affords(&mut self, ns: u64) -> CoreResult<()> {
        self.looked_at = self.pos;
        match self.deadline {
            Some(deadline) if Instant::now() + Duration::from_nanos(ns) > deadline => {
                Err(CoreError::OutOfTime)
            }
            _ => Ok(()),
        }
    }

    /// Let the GIL go for a moment once it has been held for `GIL_HOLD`.
    fn gil_yield(&mut self) {
        if self.held_since.elapsed() >= GIL_HOLD {
            // Nothing of the parser's is touched meanwhile: the objects it built so far are
            // reachable from it alone, and its input is its own locked memory.
            // Away for a moment, not just dropped and taken back: a thread waiting for the GIL
            // wakes only after the release, and the parser, running, would take it back
            // first unless that waiter had already asked for a switch (which it does on its
            // own clock: measured, an event loop then went 20 ms without a turn).
            self.py.detach(|| std::thread::sleep(GIL_AWAY));
            self.held_since = Instant::now();
        }
    }

    fn literal(&mut self, word: &[u8], value: Bound<'py, PyAny>) -> CoreResult<Bound<'py, PyAny>> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.fail("invalid literal"))
        }
    }

    fn enter(&self, depth: usize) -> CoreResult<()> {
        if depth > MAX_JSON_DEPTH {
            Err(self.fail(&format!("nesting deeper than {MAX_JSON_DEPTH} levels")))
        } else {
            Ok(())
        }
    }

    fn array(&mut self, depth: usize) -> CoreResult<Bound<'py, PyAny>> {
        self.enter(depth)?;
        self.pos += 1;
        let list = PyList::empty(self.py);
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(list.into_any());
        }
        self.path.push(Step::Index(0));
        let mut index = 0;
        loop {
            self.skip_ws();
            if let Some(step) = self.path.last_mut() {
                *step = Step::Index(index);
            }
            let item = self.value(depth)?;
            self.built(list.append(item))?;
            index += 1;
            self.skip_ws();
            match self.s.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.path.pop();
                    return Ok(list.into_any());
                }
                None => return Err(self.fail("unexpected end of data in an array")),
                Some(_) => return Err(self.fail("expected ',' or ']'")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> CoreResult<Bound<'py, PyAny>> {
        self.enter(depth)?;
        self.pos += 1;
        let dict = PyDict::new(self.py);
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(dict.into_any());
        }
        self.path.push(Step::Member {
            ordinal: 0,
            key: None,
        });
        let mut ordinal: u32 = 0;
        loop {
            self.skip_ws();
            ordinal = ordinal.saturating_add(1);
            // Until its key is read, a member is its position only.
            if let Some(Step::Member { ordinal: at, key }) = self.path.last_mut() {
                *at = ordinal;
                *key = None;
            }
            match self.s.get(self.pos) {
                Some(b'"') => {}
                None => return Err(self.fail("unexpected end of data in an object")),
                Some(_) => return Err(self.fail("expected a string key")),
            }
            let read = self.string()?;
            if let Some(Step::Member { key, .. }) = self.path.last_mut() {
                *key = Some(read);
            }
            self.skip_ws();
            if self.s.get(self.pos) != Some(&b':') {
                return Err(self.fail("expected ':'"));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value(depth)?;
            // The key is the path's (no reference count spent on a copy for it).
            let Some(Step::Member { key: Some(key), .. }) = self.path.last() else {
                return Err(self.fail("a member's key went missing from the path"));
            };
            // Duplicate keys: the last one wins, as in Python's json.
            self.built(dict.set_item(key, value))?;
            self.skip_ws();
            match self.s.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.path.pop();
                    return Ok(dict.into_any());
                }
                None => return Err(self.fail("unexpected end of data in an object")),
                Some(_) => return Err(self.fail("expected ',' or '}'")),
            }
        }
    }

    /// Check that a raw (unescaped) run of string bytes is UTF-8, reporting the bad byte.
    fn check_utf8(&self, start: usize, end: usize) -> CoreResult<()> {
        std::str::from_utf8(&self.s[start..end])
            .map(|_| ())
            .map_err(|e| self.fail_at("invalid UTF-8 in a string", start + e.valid_up_to()))
    }

    fn string(&mut self) -> CoreResult<Bound<'py, PyString>> {
        self.pos += 1; // opening quote
        let start = self.pos;
        // Fast path: no escapes, the string is a slice of the input; whether it is ASCII is
        // learnt by the same scan.
        let mut ascii = true;
        loop {
            ascii &= self.skip_plain();
            match self.s.get(self.pos) {
                None => return Err(self.fail("unterminated string")),
                Some(b'"') => {
                    // Long raw text is decoded by a vector step where the CPU has one: beyond
                    // Latin-1 to code points by `wide_str` (a 1 MiB string of mixed scripts
                    // built in 1.0 ms, 2.2 ms by CPython's UTF-8 decoder; CJK 0.6 ms, 1.8 ms),
                    // Latin-1 text to its bytes by `latin1_str`. Elsewhere it stays with
                    // CPython's decoder: the scalar steps beat it on mixed-script text but not
                    // on CJK (measured).
                    let end = self.pos;
                    if self.deadline.is_some() && end - start >= DEADLINE_LOOK_BYTES {
                        let ps = if ascii {
                            ASCII_WORST_PS_PER_BYTE
                        } else {
                            1_000 * BYTE_WORST_NS
                        };
                        self.affords(ps * (end - start) as u64 / 1_000)?;
                    }
                    if !ascii && end - start >= WIDE_RAW_MIN && latin1_avx512::available() {
                        let text = if !json_wide::beyond_latin1(&self.s[start..end]) {
                            self.latin1_str(start, end)
                        } else if json_wide::reads_raw_text_in_blocks() {
                            self.wide_str(start, end)
                        } else {
                            None
                        };
                        if let Some(text) = text {
                            return text;
                        }
                    }
                    let text = self.new_str(start, end, ascii)?;
                    self.pos += 1;
                    return Ok(text);
                }
                Some(b'\\') => break,
                Some(0..=0x1f) => return Err(self.fail("control character in a string")),
                Some(&b) => {
                    ascii &= b.is_ascii();
                    self.pos += 1;
                }
            }
        }
        // Decoded in place, over the raw text: the decoded text is never longer. The raw text
        // is checked first, while it is still there; a decoding error is reported before it.
        let end = start + self.escaped_len(start)?;
        // Within a deadline, a long one goes to the wide decoder whatever its characters: it
        // looks at the clock as it goes, and telling ASCII text (`ascii_only`, a `memchr` per
        // `\u` escape of it) could itself take milliseconds.
        let long_within = self.deadline.is_some() && end - start >= DEADLINE_LOOK_BYTES;
        if long_within {
            self.affords(ESCAPED_USUAL_PS_PER_BYTE * (end - start) as u64 / 1_000)?;
        }
        let ascii = !long_within && json_wide::ascii_only(&self.s[start..end]);
        if !ascii {
            if let Some(text) = self.wide_str(start, end) {
                return text;
            }
        }
        if self.deadline.is_some() {
            return self.unescaped_str(start, end, ascii);
        }
        // `ascii_only` found every raw byte ASCII, hence UTF-8: nothing to check.
        let raw_utf8 = if ascii {
            Ok(())
        } else {
            self.check_utf8(start, end)
        };
        let decoded = json_string::unescape_in_place(self.s, start)
            .map_err(|error| self.unescape_error(error, start))?;
        self.pos = start + decoded.closing_quote + 1;
        // Escapes split the raw text only at ASCII bytes and write UTF-8 themselves (lone
        // surrogates aside), so the decoded text is UTF-8 exactly when the raw text is: checking
        // the raw text (ASCII, fast, when the server escaped every non-ASCII character) also
        // names the first bad byte where it is.
        raw_utf8?;
        let bytes = &self.s[start..start + decoded.written];
        self.str_of_decoded(bytes, decoded.lone_surrogate)
    }

    /// The escaped string `[start, end)` for a build within a deadline: decoded into a locked
    /// buffer of its own, not in place (the input stays whole for a build elsewhere), once its
    /// worst case fits in the time left. Its raw text is checked as `string` checks it (`ascii`:
    /// known ASCII), the error reported after a decoding error's.
    fn unescaped_str(
        &mut self,
        start: usize,
        end: usize,
        ascii: bool,
    ) -> CoreResult<Bound<'py, PyString>> {
        let body = &self.s[start..end];
        let escapes = body.iter().filter(|&&b| b == b'\\').count() as u64;
        self.affords(ESCAPE_WORST_NS * escapes + BYTE_WORST_NS * body.len() as u64)?;
        let raw_utf8 = if ascii {
            Ok(())
        } else {
            self.check_utf8(start, end)
        };
        let mut out = LockedBuf::for_overwrite(end - start + 8)?;
        let decoded = json_string::unescape(&self.s[start..], out.as_mut_slice())
            .map_err(|error| self.unescape_error(error, start))?;
        self.pos = start + decoded.closing_quote + 1;
        raw_utf8?;
        // `out` is wiped as it drops.
        self.str_of_decoded(&out.as_slice()[..decoded.written], decoded.lone_surrogate)
    }

    /// The `str` of a string body decoded to UTF-8 (`lone_surrogate`: with a lone surrogate in
    /// the 3-byte form the `surrogatepass` codec reads).
    fn str_of_decoded(
        &self,
        bytes: &[u8],
        lone_surrogate: bool,
    ) -> CoreResult<Bound<'py, PyString>> {
        if lone_surrogate {
            // Python's json accepts "\ud800"; build the same str via the surrogatepass codec.
            // SAFETY: pointer and length describe `bytes`; the codec name is NUL-terminated.
            let obj = unsafe {
                Bound::from_owned_ptr_or_err(
                    self.py,
                    pyo3::ffi::PyUnicode_DecodeUTF8(
                        bytes.as_ptr().cast(),
                        bytes.len() as pyo3::ffi::Py_ssize_t,
                        c"surrogatepass".as_ptr(),
                    ),
                )
            };
            let obj = self.built(obj)?;
            return self.built(obj.cast_into::<PyString>().map_err(PyErr::from));
        }
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: UTF-8 by the argument above (raw text checked, no lone surrogate written).
        let text = unsafe { std::str::from_utf8_unchecked(bytes) };
        Ok(PyString::new(self.py, text))
    }

    /// The string whose body is `[start, end)` (`end` at its closing quote), decoded to `wchar_t`s
    /// in the parser's locked `wide` buffer and built from there (`pystr`), skipping CPython's
    /// UTF-8 decoder; `None` where the decoder refuses the body, which is then read the usual
    /// way (that names the error, or reads what the decoder does not take).
    fn wide_str(&mut self, start: usize, end: usize) -> Option<CoreResult<Bound<'py, PyString>>> {
        let body_len = end - start;
        // Room in `wchar_t` units (the estimate is exact for usual text: the `str` written in
        // place is then never cut), never more than one a byte (no string has more: the UTF-16
        // estimate counts two for each byte from 0xF0 up, and a body of such bytes, which the
        // decoder refuses at the first, would have the server size a buffer of eight times its
        // length), and 8 units of slack: the decoder widens ASCII runs 8 bytes at a time.
        let mut room = json_wide::estimated_wide_units(&self.s[start..end]).min(body_len) + 8;
        let mut from = json_wide::Progress::default();
        // A long string's first units are decoded on their own: where they already hold a
        // character beyond the BMP, the string will be UCS-4, and the rest is decoded straight
        // into the `str` (`wide_str_in_place`).
        let mut first = (json_wide::UNIT_BYTES == 4
            && body_len >= IN_PLACE_MIN
            && room > FIRST_UNITS
            && pystr_fresh::available(self.py))
        .then_some(FIRST_UNITS);
        let wide = loop {
            // Only the first units' room while they are decoded on their own: a string that
            // goes on in place never needs the rest, nor its allocation and wipe.
            if let Err(error) = self.wide_room(first.unwrap_or(room), from.written) {
                return Some(Err(error));
            }
            let Some(dst) = self
                .wide
                .as_mut_slice()
                .get_mut(..json_wide::UNIT_BYTES * first.unwrap_or(room))
            else {
                return Some(Err(CoreError::Memory("string buffer too small".into())));
            };
            let decoded = decode_wide_on_time(&self.s[start..], dst, from, self.deadline);
            match decoded {
                Err(error) => return Some(Err(error)),
                Ok(Ok(wide)) => break wide,
                Ok(Err(json_wide::WideStop::NoRoom(progress))) if first.take().is_some() => {
                    if progress.bits >= 0x1_0000 {
                        return self.wide_str_in_place(start, end, room, progress);
                    }
                    from = progress;
                }
                Ok(Err(json_wide::WideStop::NoRoom(progress))) => {
                    room = json_wide::most_units(body_len, &progress) + 8;
                    from = progress;
                }
                Ok(Err(json_wide::WideStop::Refused)) => return None,
            }
        };
        self.pos = start + wide.closing_quote + 1;
        let built = crate::pystr::from_wide(self.py, self.wide.as_mut_slice(), &wide);
        Some(self.built(built))
    }

    /// `wide_str` on from `progress` (its first units, in `wide`, hold a character beyond the
    /// BMP), decoded straight into a new UCS-4 `str` of `room` code points (`pystr_fresh`) and
    /// cut to length: the copy `from_wide` would make is not needed.
    fn wide_str_in_place(
        &mut self,
        start: usize,
        end: usize,
        mut room: usize,
        progress: json_wide::Progress,
    ) -> Option<CoreResult<Bound<'py, PyString>>> {
        let body_len = end - start;
        let unit = json_wide::UNIT_BYTES;
        let first = self.wide.as_slice().get(..unit * progress.written);
        let mut fresh = match self.fresh_str(room, first.unwrap_or_default()) {
            Ok(fresh) => fresh,
            Err(error) => return Some(Err(error)),
        };
        let mut from = progress;
        loop {
            let decoded =
                decode_wide_on_time(&self.s[start..], fresh.bytes_mut(), from, self.deadline);
            match decoded {
                // Past the deadline: the str is wiped as it drops.
                Err(error) => return Some(Err(error)),
                Ok(Ok(wide)) => {
                    self.pos = start + wide.closing_quote + 1;
                    return Some(self.built(fresh.finish(wide.units)));
                }
                Ok(Err(json_wide::WideStop::NoRoom(progress))) => {
                    // The estimate fell short (a `\\u` in the text): a bigger str, the units so
                    // far copied over; the smaller one is wiped as it drops.
                    room = json_wide::most_units(body_len, &progress) + 8;
                    let kept = fresh.bytes_mut().get(..unit * progress.written);
                    fresh = match self.fresh_str(room, kept.unwrap_or_default()) {
                        Ok(bigger) => bigger,
                        Err(error) => return Some(Err(error)),
                    };
                    from = progress;
                }
                // Past the first units: read the usual way, which names the error (the str is
                // wiped as it drops).
                Ok(Err(json_wide::WideStop::Refused)) => return None,
            }
        }
    }

    /// A new UCS-4 `str` of `units` code points whose first ones are `decoded` (their bytes).
    fn fresh_str(&self, units: usize, decoded: &[u8]) -> CoreResult<pystr_fresh::FreshUcs4<'py>> {
        let misfit = || CoreError::Memory("no str to write in place".into());
        let mut fresh = self
            .built(pystr_fresh::FreshUcs4::new(self.py, units))?
            .ok_or_else(misfit)?;
        fresh
            .bytes_mut()
            .get_mut(..decoded.len())
            .ok_or_else(misfit)?
            .copy_from_slice(decoded);
        Ok(fresh)
    }

    /// The raw string body `[start, end)` (`end` at its closing quote, no escape before it) as
    /// Latin-1 bytes in the parser's locked `wide` buffer, built from there (`pystr`), skipping
    /// both UTF-8 checks (Rust's, then CPython's decoder); `None` where the body is not valid
    /// UTF-8 of Latin-1 characters only, which is then read the usual way (that names the
    /// error, or reads what the vector step does not take).
    fn latin1_str(&mut self, start: usize, end: usize) -> Option<CoreResult<Bound<'py, PyString>>> {
        let bytes = end - start + latin1_avx512::SLACK;
        if let Err(error) = self.wide_room(bytes.div_ceil(json_wide::UNIT_BYTES), 0) {
            return Some(Err(error));
        }
        let latin1 = latin1_avx512::to_latin1(&self.s[start..end], self.wide.as_mut_slice())?;
        self.pos = end + 1;
        let built = crate::pystr::from_latin1(self.py, &self.wide.as_slice()[..latin1]);
        Some(self.built(built))
    }

    /// Make `wide` hold at least `units` of `decode_wide`'s units, keeping its first `kept`.
    fn wide_room(&mut self, units: usize, kept: usize) -> CoreResult<()> {
        let bytes = units
            .checked_mul(json_wide::UNIT_BYTES)
            .ok_or_else(|| CoreError::Memory("string too long".into()))?;
        if self.wide.len() >= bytes {
            return Ok(());
        }
        let mut bigger = LockedBuf::for_overwrite(bytes)?;
        let kept = json_wide::UNIT_BYTES * kept;
        bigger.as_mut_slice()[..kept].copy_from_slice(&self.wide.as_slice()[..kept]);
        // The old buffer is wiped as it drops.
        self.wide = bigger;
        Ok(())
    }

    fn unescape_error(&self, error: UnescapeError, start: usize) -> CoreError {
        match error {
            UnescapeError::Unterminated => self.fail_at("unterminated string", self.s.len()),
            UnescapeError::Control(at) => self.fail_at("control character in a string", start + at),
            UnescapeError::InvalidEscape(at) => self.fail_at("invalid escape", start + at),
            UnescapeError::UnterminatedEscape(at) => {
                self.fail_at("unterminated escape", start + at)
            }
            UnescapeError::TruncatedHex(at) => self.fail_at("truncated \\u escape", start + at),
            UnescapeError::InvalidHex(at) => self.fail_at("invalid \\u escape", start + at),
            UnescapeError::NoRoom => self.fail_at("string decoding overran its buffer", start),
        }
    }

    /// Bytes from `start` to the closing quote (or the end of the input), escapes included:
    /// the closing quote is the first '"' after an even number of backslashes. A build within
    /// a deadline looks at the clock every `QUOTES_PER_CLOCK_LOOK` escaped quotes (a string of
    /// nothing but them is a search a quote).
    fn escaped_len(&self, start: usize) -> CoreResult<usize> {
        const QUOTES_PER_CLOCK_LOOK: usize = 4096;
        let mut from = self.pos;
        let mut quotes = 0usize;
        while let Some(quote) = find_quote(self.s, from) {
            let backslashes = self.s[start..quote]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count();
            if backslashes % 2 == 0 {
                return Ok(quote - start);
            }
            from = quote + 1;
            quotes += 1;
            if quotes.is_multiple_of(QUOTES_PER_CLOCK_LOOK)
                && self
                    .deadline
                    .is_some_and(|deadline| Instant::now() >= deadline)
            {
                return Err(CoreError::OutOfTime);
            }
        }
        Ok(self.s.len() - start)
    }

    /// Advance over string bytes that need no attention (SIMD compares, `plain_run`); whether
    /// they were all ASCII.
    fn skip_plain(&mut self) -> bool {
        let run = plain_run(self.s.get(self.pos..).unwrap_or_default());
        self.pos += run.len;
        run.ascii
    }

    /// A str of the raw text `[start, end)` of the input, which has no escapes: as it is when
    /// the scan found it `ascii`, otherwise validated as UTF-8 here first: CPython's decoder,
    /// given invalid bytes, would raise a UnicodeDecodeError holding a `bytes` copy of them,
    /// which nobody wipes.
    fn new_str(&self, start: usize, end: usize, ascii: bool) -> CoreResult<Bound<'py, PyString>> {
        let bytes = &self.s[start..end];
        if ascii {
            debug_assert!(bytes.is_ascii());
            // SAFETY: ASCII (the scan saw no byte above 0x7F in it), hence UTF-8.
            let text = unsafe { std::str::from_utf8_unchecked(bytes) };
            return Ok(PyString::new(self.py, text));
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(PyString::new(self.py, text)),
            Err(_) => {
                // Escapes split the raw text only at ASCII bytes, so its first invalid byte is
                // the one that made the decoded text invalid.
                self.check_utf8(start, end)?;
                Err(self.fail_at("invalid UTF-8 in a string", start))
            }
        }
    }

    fn number(&mut self) -> CoreResult<Bound<'py, PyAny>> {
        let start = self.pos;
        let Some(number) = scan_number(self.s, start) else {
            return Err(self.fail_at("invalid number", start));
        };
        self.pos = number.end;
        let is_float = number.is_float;
        let text = &self.s[start..self.pos];
        // SAFETY: the number grammar (scan_number) admits only ASCII.
        let text = unsafe { std::str::from_utf8_unchecked(text) };
        if is_float {
            let value: f64 = text
                .parse()
                .map_err(|_| self.fail_at("invalid number", start))?;
            return Ok(PyFloat::new(self.py, value).into_any());
        }
        if let Ok(value) = text.parse::<i64>() {
            let Ok(int) = value.into_pyobject(self.py);
            return Ok(int.into_any());
        }
        if number.int_digits > MAX_INT_DIGITS {
            // Refused whatever the interpreter's limit: the server is not to set the GIL's
            // hold (CPython refuses it at its default limit with the same words).
            return Err(self.fail_at("integer too large", start));
        }
        // Big integer: CPython parses the digits (NUL-terminated copy in locked memory).
        self.scratch.clear();
        self.scratch.extend_from_slice(text.as_bytes())?;
        self.scratch.extend_from_slice(&[0])?;
        // SAFETY: the scratch holds a NUL-terminated ASCII decimal number.
        let obj = unsafe {
            Bound::from_owned_ptr_or_err(
                self.py,
                pyo3::ffi::PyLong_FromString(
                    self.scratch.as_ptr().cast(),
                    std::ptr::null_mut(),
                    10,
                ),
            )
        };
        self.scratch.clear();
        // CPython converts digits in time that grows faster than their count (~75 us for
        // 4300, the most the reader takes): a few hundred of them would hold the GIL as long
        // as a million small values, so a long one looks at the clock too.
        if text.len() >= LONG_INTEGER_DIGITS {
            self.gil_yield();
            self.on_time()?;
        }
        obj.map_err(|_| self.fail_at("integer too large", start))
    }
}
