//! One error type for the whole core.
//!
//! Crypto failures carry no detail at all: every cause (wrong key, flipped bit, bad padding,
//! truncated tag) produces the same `CoreError::Crypto`, so that an attacker probing the client
//! learns nothing from the message or the type. Format errors name the field and the rule,
//! never any secret content.

#![forbid(unsafe_code)]

use std::fmt;

/// The single message of every unwrap/authentication failure.
pub const CRYPTO_FAILURE_MESSAGE: &str =
    "decryption failed: the response could not be authenticated";

/// Every failure of the core; its `Display` text is what Python sees (no secret in it).
#[derive(Debug)]
pub enum CoreError {
    /// Unwrapping or authentication failed. Deliberately carries nothing.
    Crypto,
    /// The envelope is malformed or names an unsupported version/algorithm.
    Envelope(String),
    /// Sealing: the serialized request exceeds the plaintext cap (the caller's mistake).
    RequestTooLarge(String),
    /// Opening: the response envelope exceeds its cap (a malformed response).
    ResponseTooLarge(String),
    /// A key is malformed, not RSA, or too short.
    KeyFormat(String),
    /// A password is missing, wrong, or too short.
    KeyPassword(String),
    /// A private key file is accessible by group or others.
    KeyPermission(String),
    /// The key handle was wiped.
    KeyDisposed,
    /// A caller passed a value outside the accepted range (key size, ...).
    InvalidArgument(String),
    /// A value that cannot be represented as JSON (maps to `TypeError` in Python).
    NotJson(String),
    /// File system failure while reading or writing key files.
    Io(std::io::Error),
    /// Secure allocation failed outright (not a lock failure, which degrades instead).
    Memory(String),
    /// A build given a deadline ran past it (`json::read_py_within`, which says so as `None`).
    OutOfTime,
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Crypto => f.write_str(CRYPTO_FAILURE_MESSAGE),
            CoreError::KeyDisposed => {
                f.write_str("the key pair was wiped and can no longer be used")
            }
            CoreError::Io(e) => write!(f, "{e}"),
            CoreError::OutOfTime => f.write_str("the build ran past its deadline"),
            CoreError::Envelope(m)
            | CoreError::RequestTooLarge(m)
            | CoreError::ResponseTooLarge(m)
            | CoreError::KeyFormat(m)
            | CoreError::KeyPassword(m)
            | CoreError::KeyPermission(m)
            | CoreError::InvalidArgument(m)
            | CoreError::NotJson(m)
            | CoreError::Memory(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CoreError {}

impl From<std::io::Error> for CoreError {
    fn from(e: std::io::Error) -> Self {
        CoreError::Io(e)
    }
}

/// Any rejection from aws-lc-rs during unwrap or decrypt is the opaque crypto error.
impl From<aws_lc_rs::error::Unspecified> for CoreError {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        CoreError::Crypto
    }
}

/// The result of every fallible core operation.
pub type CoreResult<T> = Result<T, CoreError>;

#[cfg(feature = "python")]
pub mod py {
    //! The Python classes of the core's errors, and the one mapping to them.
    //!
    //! The classes are the package's own, defined in `nomyo_native/errors.py` with the bases a
    //! user catches (`SecurityError`, `ResponseFormatError`, `KeyLoadError`...), so no layer
    //! above has to translate them. `_core` re-exports them under its historical names.
    use super::CoreError as Rust;
    use pyo3::exceptions::{
        PyBaseException, PyImportError, PyMemoryError, PyOSError, PyTimeoutError, PyTypeError,
        PyValueError,
    };
    use pyo3::prelude::*;
    use pyo3::types::PyType;

    /// Where the classes live; `register` imports it once, at module initialisation.
    const ERRORS_MODULE: &str = "nomyo_native.errors";

    pyo3::import_exception!(nomyo_native.errors, CoreError);
    pyo3::import_exception!(nomyo_native.errors, CryptoError);
    pyo3::import_exception!(nomyo_native.errors, EnvelopeError);
    pyo3::import_exception!(nomyo_native.errors, SizeLimitError);
    pyo3::import_exception!(nomyo_native.errors, RequestTooLargeError);
    pyo3::import_exception!(nomyo_native.errors, ResponseTooLargeError);
    pyo3::import_exception!(nomyo_native.errors, KeyFormatError);
    pyo3::import_exception!(nomyo_native.errors, KeyPasswordError);
    pyo3::import_exception!(nomyo_native.errors, KeyPermissionError);
    pyo3::import_exception!(nomyo_native.errors, KeyDisposedError);
    pyo3::import_exception!(nomyo_native.errors, TpmFormatError);

    impl From<Rust> for PyErr {
        fn from(e: Rust) -> PyErr {
            let msg = e.to_string();
            match e {
                Rust::Crypto => CryptoError::new_err(msg),
                Rust::Envelope(_) => EnvelopeError::new_err(msg),
                Rust::RequestTooLarge(_) => RequestTooLargeError::new_err(msg),
                Rust::ResponseTooLarge(_) => ResponseTooLargeError::new_err(msg),
                Rust::KeyFormat(_) => KeyFormatError::new_err(msg),
                Rust::KeyPassword(_) => KeyPasswordError::new_err(msg),
                Rust::KeyPermission(_) => KeyPermissionError::new_err(msg),
                Rust::KeyDisposed => KeyDisposedError::new_err(msg),
                Rust::InvalidArgument(_) => PyValueError::new_err(msg),
                Rust::NotJson(_) => PyTypeError::new_err(msg),
                Rust::Io(io) => io_error(&io, msg),
                Rust::Memory(_) => PyMemoryError::new_err(msg),
                Rust::OutOfTime => PyTimeoutError::new_err(msg),
            }
        }
    }

    /// A system call's failure is an `OSError` with its errno (Python picks the subclass:
    /// `FileNotFoundError`...). The standard library's own refusals carry no errno: a path with
    /// a NUL byte is a `ValueError`, as Python's `open()` raises it, and running out of memory a
    /// `MemoryError`; nothing is reported as "errno 0".
    fn io_error(io: &std::io::Error, msg: String) -> PyErr {
        match (io.raw_os_error(), io.kind()) {
            (Some(errno), _) => PyOSError::new_err((errno, msg)),
            (None, std::io::ErrorKind::InvalidInput) => PyValueError::new_err(msg),
            (None, std::io::ErrorKind::OutOfMemory) => PyMemoryError::new_err(msg),
            (None, _) => PyOSError::new_err(msg),
        }
    }

    /// Every class `From<Rust> for PyErr` raises, by its name in `nomyo_native.errors`.
    const RAISED: [&str; 11] = [
        "CoreError",
        "CryptoError",
        "EnvelopeError",
        "SizeLimitError",
        "RequestTooLargeError",
        "ResponseTooLargeError",
        "KeyFormatError",
        "KeyPasswordError",
        "KeyPermissionError",
        "KeyDisposedError",
        "TpmFormatError",
    ];

    /// Import the classes and expose them on `_core` under the names the tests and older callers
    /// use.
    ///
    /// Every class is checked and resolved here, once: `import_exception!` resolves a class on
    /// the first error that needs it and panics when it cannot, and that happens while the error
    /// is being raised, outside any `catch_unwind`, so the process aborts. A module that lacks a
    /// class, or names something that is not an exception class (a partial import, a module
    /// shadowing ours), is a clear `ImportError` now instead of a panic or a wrong class later.
    pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
        let py = m.py();
        let module = py.import(ERRORS_MODULE)?;
        for name in RAISED {
            let is_exception_class = module
                .getattr(name)
                .ok()
                .and_then(|class| class.cast_into::<PyType>().ok())
                .is_some_and(|class| class.is_subclass_of::<PyBaseException>().unwrap_or(false));
            if !is_exception_class {
                return Err(PyImportError::new_err(format!(
                    "nomyo_native._core raises {ERRORS_MODULE}.{name}, which the module imported \
                     as {ERRORS_MODULE} does not define as an exception class (a partially \
                     initialised or shadowing module?)"
                )));
            }
        }
        // Resolved now (cached for the process), not at the first error that needs them.
        py.get_type::<RequestTooLargeError>();
        py.get_type::<ResponseTooLargeError>();
        m.add("CoreError", py.get_type::<CoreError>())?;
        m.add("CryptoError", py.get_type::<CryptoError>())?;
        m.add("EnvelopeError", py.get_type::<EnvelopeError>())?;
        // Both directions' size errors: `except _core.PayloadTooLargeError` catches either.
        m.add("PayloadTooLargeError", py.get_type::<SizeLimitError>())?;
        m.add("KeyFormatError", py.get_type::<KeyFormatError>())?;
        m.add("KeyPasswordError", py.get_type::<KeyPasswordError>())?;
        m.add("KeyPermissionError", py.get_type::<KeyPermissionError>())?;
        m.add("KeyDisposedError", py.get_type::<KeyDisposedError>())?;
        m.add("TpmFormatError", py.get_type::<TpmFormatError>())?;
        Ok(())
    }

    /// What a panic in the core prints: where it happened, never its message.
    ///
    /// A panic's message can quote what the code was looking at (an `expect` on a parse, the
    /// index and length of a slice of plaintext), and the default hook prints it to stderr,
    /// before `no_panic` turns the panic into the opaque crypto error, into the logs of a
    /// service that would never log a request. The hook is this module's own (the core links
    /// its own Rust standard library), so no other extension's panics are affected. Writing to
    /// a closed stderr is ignored: a panic inside the hook would abort the process.
    pub fn quiet_panics() {
        std::panic::set_hook(Box::new(|info| {
            use std::io::Write as _;
            let place = info.location().map_or_else(
                || "an unknown place".to_owned(),
                |at| format!("{}:{}", at.file(), at.line()),
            );
            let _ = writeln!(
                std::io::stderr(),
                "nomyo_native._core: internal error (a Rust panic at {place}; its message is \
                 withheld, as it may quote the data being handled)"
            );
        }));
    }

    /// Run `f`, turning a Rust panic into the opaque crypto error so that no panic ever crosses
    /// into Python (the secrets on the unwinding stack are wiped by their `Drop`).
    pub fn no_panic<T>(
        f: impl FnOnce() -> Result<T, Rust> + std::panic::UnwindSafe,
    ) -> PyResult<T> {
        match std::panic::catch_unwind(f) {
            Ok(r) => r.map_err(PyErr::from),
            Err(_) => Err(CryptoError::new_err(super::CRYPTO_FAILURE_MESSAGE)),
        }
    }
}
