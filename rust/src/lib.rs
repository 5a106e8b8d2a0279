//! `nomyo_native._core`: the native core of nomyo-native.
//!
//! The pure-Rust modules do every operation that touches a secret; the thin PyO3 bindings over
//! them live in `py/` (compiled with the default `python` feature) and this file declares the
//! Python module: what it exports, and what must happen when it is first imported.

mod avx2_steps;
pub mod base64_avx512;
pub mod envelope;
pub mod envelope_scan;
pub mod error;
pub mod escapes_avx512;
pub mod fill;
mod fork;
pub mod json_path;
pub mod json_scan;
pub mod json_string;
pub mod json_wide;
pub mod keys;
pub mod latin1_avx512;
pub mod lc_heap;
pub mod narrow_avx512;
mod page;
pub mod page_offset_copy;
pub mod record_blocks;
pub mod request_body;
pub mod secret;
#[cfg(test)]
mod timing;
pub mod tls;
pub mod tls_parity;
pub mod tls_records;
pub mod tpm;
pub mod ucs4_simd;
pub mod unit_counts;
pub mod utf8_avx512;
#[cfg(windows)]
mod win;

#[cfg(feature = "python")]
pub mod json;
#[cfg(feature = "python")]
pub mod pystr;
#[cfg(feature = "python")]
pub mod pystr_fresh;
#[cfg(feature = "python")]
pub mod pystr_kind;

/// The PyO3 bindings, one module per concern; `_core` below only lists what they export.
#[cfg(feature = "python")]
mod py;

/// `nomyo_native._core`. Its exception classes are the package's own (`nomyo_native.errors`,
/// see `error::py`); the test build adds the `_testing` submodule of probes.
#[cfg(feature = "python")]
#[pyo3::pymodule]
mod _core {
    use pyo3::prelude::*;

    // ---- keys
    #[pymodule_export]
    use crate::py::keys::{ClientKeyPair, ServerPublicKey};
    #[pymodule_export]
    const MIN_RSA_BITS: usize = crate::keys::MIN_RSA_BITS;

    // ---- envelope: seal a request, open a response
    #[pymodule_export]
    use crate::py::envelope::{decrypt_envelope, open_envelope, seal, OpenedEnvelope};
    // An openai SDK's request bytes, read straight into locked memory and sealed (issue 14).
    #[pymodule_export]
    use crate::request_body::py::RequestBody;
    #[pymodule_export]
    const MAX_PLAINTEXT_BYTES: usize = crate::envelope::MAX_PLAINTEXT_BYTES;
    #[pymodule_export]
    const MAX_ENVELOPE_BYTES: usize = crate::envelope::MAX_ENVELOPE_BYTES;
    #[pymodule_export]
    const MAX_JSON_DEPTH: usize = crate::json::MAX_JSON_DEPTH;

    // ---- locked memory
    #[pymodule_export]
    use crate::py::memory::{memory_status, wipe, BufferLock};

    // ---- TPM structures and X.509 signatures (public inputs)
    #[pymodule_export]
    use crate::py::tpm::{
        tpm_make_credential, tpm_parse_attest, tpm_parse_public, tpm_parse_signature,
        tpm_verify_signature, x509_verify_signature,
    };

    // ---- TLS records of the client's connections (issue 15)
    #[pymodule_export]
    use crate::py::tls::{TlsConfig, TlsSession};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        // Before anything can panic: a panic's message may quote data, and is never printed.
        crate::error::py::quiet_panics();
        // So that a `fork` from now on never leaves a child a lock held (see fork.rs).
        crate::fork::install();
        // Before aws-lc allocates anything: its keys and contexts go to locked, wiped memory.
        crate::lc_heap::install();
        // Locked memory's one-time set-up now, under the GIL, before any thread can allocate:
        // a fork landing inside it would leave the child stuck (see secret::initialise).
        crate::secret::initialise();
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        crate::error::py::register(m)?;
        crate::py::tls::register(m)?;
        // The historical name (it shadows the builtin `open` in a star import, hence the rename).
        m.add("open", m.getattr("open_envelope")?)?;
        #[cfg(feature = "testing")]
        crate::py::testing::register(m)?;
        Ok(())
    }
}
