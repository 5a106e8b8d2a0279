//! The PyO3 bindings of `nomyo_native._core`, one module per concern. Each converts arguments,
//! releases the GIL around the slow operations and keeps panics out of Python (`no_panic`);
//! the work itself is done by the pure-Rust modules of the crate.

/// Response bodies taken as bytes or a contiguous byte buffer, without a copy.
pub mod byte_buffer;
pub mod envelope;
/// Output `bytes` written in place, never zeroed first.
pub mod filled_bytes;
pub mod keys;
pub mod memory;
/// `_core._testing`: probes for the test suite, compiled only with the `testing` feature.
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod tpm;
