//! Copies that never run with their destination 1-15 bytes past their source in page offset.
//!
//! On the bench machine (AMD EPYC, AVX-512), a copy whose destination lies 1 to 15 bytes past
//! its source modulo 4096 runs at 3.5 GB/s. At every other relative offset it runs at 28-100
//! GB/s. This holds for glibc's `memcpy` and for 64-byte vector loops, forwards or backwards (a
//! scratch C loop over relative offsets, `benches/PERFORMANCE.md`). Three copies of the TLS path
//! are the core's own:
//! - a record's plaintext into the response body (`TlsSession::take_plaintext`);
//! - the socket's bytes into rustls's receive buffer (`Source`);
//! - the records rustls encrypted into the `bytes` that are sent (`fill::Fill`).
//!
//! The process's layout decides where those buffers lie. For a body, one unlucky layout put
//! every record of a 3 MB answer in the band: +0.64 ms per exchange, measured with
//! `bench_transport`'s exchange. Where a copy would run in the band, it goes through a
//! per-thread scratch buffer instead, half a page from both ends: two copies at full speed.
//!
//! The scratch only ever holds bytes of the TLS stream, in ciphertext or in the clear (HTTP
//! heads and response envelopes). The secrets the core guards never pass through here, so it is
//! not wiped.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;

/// A page, as the CPU matches loads against earlier stores by page offset.
const PAGE: usize = 4096;
/// Bytes moved through the scratch at a time: 2 KiB pieces copied a 16 KiB record in 0.39 us
/// against 4.6 us straight; pieces of 4 KiB or more ran as slowly as the straight copy
/// (`tests::time_copies_in_and_out_of_the_band`).
const CHUNK: usize = 2 * 1024;
/// Where the scratch sits past the source, in page offset: half a page from both the source
/// and the destination (1-15 bytes past the source), far from any band (in a C loop copying
/// 3 MB of 16 KiB records into a cold buffer: 0.87 ms straight, 0.096 ms through the scratch
/// at half a page or 64 bytes, 0.108 ms at 24; 0.055 ms straight outside the band).
const LEAD: usize = PAGE / 2;
/// Shorter copies go straight: the band costs a few cycles a 64-byte step, less than a detour.
const BOUNCE_MIN: usize = 256;

thread_local! {
    /// `CHUNK` bytes at any page offset: `CHUNK + PAGE` bytes, allocated on first use.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Whether a copy from `src` to `dst` would run in the slow band: `dst` 1-15 bytes past `src`
/// modulo a page.
pub fn in_slow_band(src: *const u8, dst: *const u8) -> bool {
    let ahead = (dst as usize).wrapping_sub(src as usize) % PAGE;
    (1..16).contains(&ahead)
}

/// How `copy` moved the bytes (tests see the route taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// One copy, straight.
    Direct,
    /// Through the scratch: two copies, outside the slow band.
    Bounced,
}

/// Copy `src` into the start of `dst` (as much of it as `dst` holds).
pub fn copy(src: &[u8], dst: &mut [u8]) -> Route {
    // SAFETY: `MaybeUninit<u8>` has the size, alignment and validity of `u8`; the view is
    // written with initialised bytes only, so `dst` stays initialised.
    let dst = unsafe { &mut *(std::ptr::from_mut(dst) as *mut [MaybeUninit<u8>]) };
    copy_uninit(src, dst)
}

/// `copy` into memory that need not be initialised: the first `min(src, dst)` bytes of `dst`
/// are written.
pub fn copy_uninit(src: &[u8], dst: &mut [MaybeUninit<u8>]) -> Route {
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    if src.len() < BOUNCE_MIN || !in_slow_band(src.as_ptr(), dst.as_ptr().cast()) {
        dst.copy_from_slice(as_uninit(src));
        return Route::Direct;
    }
    let bounced = SCRATCH.with(|scratch| {
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            return false;
        };
        if scratch.len() < CHUNK + PAGE {
            scratch.resize(CHUNK + PAGE, 0);
        }
        let base = scratch.as_ptr() as usize % PAGE;
        for (from, to) in src.chunks(CHUNK).zip(dst.chunks_mut(CHUNK)) {
            // A slot whose page offset is the source's plus LEAD.
            let start = (from.as_ptr() as usize + LEAD).wrapping_sub(base) % PAGE;
            let slot = &mut scratch[start..start + from.len()];
            slot.copy_from_slice(from);
            to.copy_from_slice(as_uninit(slot));
        }
        true
    });
    if bounced {
        Route::Bounced
    } else {
        dst.copy_from_slice(as_uninit(src));
        Route::Direct
    }
}

/// `bytes` as the `MaybeUninit` bytes a copy into uninitialised memory reads.
fn as_uninit(bytes: &[u8]) -> &[MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the size, alignment and validity of `u8`, and every
    // initialised `u8` is a valid `MaybeUninit<u8>`; the view is only read.
    unsafe { &*(std::ptr::from_ref(bytes) as *const [MaybeUninit<u8>]) }
}

/// `&[u8]`'s `io::Read`, copying with `copy`: what rustls reads the socket's bytes through.
pub struct Source<'a>(pub &'a [u8]);

impl io::Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.0.len());
        let (now, rest) = self.0.split_at(n);
        copy(now, &mut buf[..n]);
        self.0 = rest;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "page_offset_copy_tests.rs"]
mod tests;
