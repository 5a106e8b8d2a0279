//! `nomyo_native._core`: the native core of nomyo-native.
//!
//! The pure-Rust modules do every operation that touches a secret; this file holds only the
//! thin PyO3 bindings over them (compiled with the default `python` feature).

pub mod envelope;
pub mod error;
pub mod keys;
pub mod secret;

#[cfg(feature = "python")]
pub mod json;

#[cfg(feature = "python")]
use pyo3::prelude::*;

#[cfg(feature = "python")]
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    error::py::register(m)?;
    register_memory(m)?;
    register_crypto(m)?;
    Ok(())
}

// ---- memory bindings: memory_status, BufferLock, wipe, test probes ---------------------------

#[cfg(feature = "python")]
fn register_memory(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}

// ---- crypto bindings: ClientKeyPair, ServerPublicKey, seal, open ------------------------------

#[cfg(feature = "python")]
fn register_crypto(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
