//! Writing an output of known size straight into memory that was never initialised.
//!
//! The request envelope (1.4 MB for a 1 MiB prompt) and a connection's TLS records are written
//! into a fresh Python `bytes` or vector whose size is known beforehand. Zeroing that memory
//! first, as `PyBytes::new_with` and `vec![0; n]` do, costs a pass over a megabyte per request
//! that every byte is then written over. `Fill` hands the writer the uninitialised memory
//! instead, and knows how much of it has been written: only a buffer it reports full is ever
//! read as bytes.

use std::io;
use std::mem::MaybeUninit;

use base64_simd::Out;

/// A writer that fills `buf` front to back. Invariant: `buf[..filled]` is initialised.
pub struct Fill<'a> {
    buf: &'a mut [MaybeUninit<u8>],
    filled: usize,
}

impl<'a> Fill<'a> {
    /// A writer at the start of `buf` (nothing of which need be initialised).
    pub fn new(buf: &'a mut [MaybeUninit<u8>]) -> Self {
        Fill { buf, filled: 0 }
    }

    /// Bytes the buffer holds in all.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Bytes written so far.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// Whether every byte of the buffer has been written.
    pub fn is_full(&self) -> bool {
        self.filled == self.buf.len()
    }

    /// Append `bytes`; `None` (and nothing written) if they do not fit.
    pub fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.filled.checked_add(bytes.len())?;
        let dst = self.buf.get_mut(self.filled..end)?;
        // One copy (a byte loop showed in profiles of the 1 MiB request), out of the page
        // offsets where it runs at a twentieth of its speed (rustls's records, page-aligned).
        crate::page_offset_copy::copy_uninit(bytes, dst);
        self.filled = end;
        Some(())
    }

    /// Let `write` fill up to `len` bytes at the end of what is written, through an `Out`
    /// (the output type of the SIMD codecs), and append what it returns. The returned slice
    /// must start where the room starts (the writer's own output): anything else is refused
    /// with `None`, and nothing is counted as written.
    pub fn put_with(
        &mut self,
        len: usize,
        write: impl FnOnce(Out<'_, [u8]>) -> &[u8],
    ) -> Option<()> {
        let end = self.filled.checked_add(len)?;
        let room = self.buf.get_mut(self.filled..end)?;
        let start = room.as_ptr().cast::<u8>();
        let written = write(Out::from_uninit_slice(room));
        // Only bytes the writer wrote into the room itself count as initialised.
        if written.as_ptr() != start || written.len() > len {
            return None;
        }
        self.filled += written.len();
        Some(())
    }
}

/// Rustls writes its records through `io::Write`; a full buffer takes nothing more (`Ok(0)`).
impl io::Write for Fill<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = bytes.len().min(self.buf.len() - self.filled);
        self.put(&bytes[..n])
            .ok_or_else(|| io::Error::other("the output buffer is full"))?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A vector of exactly `len` bytes, filled by `write` without being zeroed first; `Ok(None)`
/// when `write` succeeded but did not fill it all.
pub fn vec_filled_by<E>(
    len: usize,
    write: impl FnOnce(&mut Fill<'_>) -> Result<(), E>,
) -> Result<Option<Vec<u8>>, E> {
    let mut out = Vec::with_capacity(len);
    let full = {
        let mut fill = Fill::new(&mut out.spare_capacity_mut()[..len]);
        write(&mut fill)?;
        fill.is_full()
    };
    if !full {
        return Ok(None);
    }
    // SAFETY: the capacity is at least `len`, and `Fill` reported all `len` bytes written.
    unsafe { out.set_len(len) };
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_vector_is_returned_only_when_every_byte_was_written() {
        let whole = vec_filled_by::<()>(5, |f| {
            f.put(b"ab").unwrap();
            f.put(b"cde").unwrap();
            assert!(f.put(b"f").is_none(), "nothing past the end");
            Ok(())
        });
        assert_eq!(whole, Ok(Some(b"abcde".to_vec())));
        let partial = vec_filled_by::<()>(5, |f| f.put(b"abcd").ok_or(()));
        assert_eq!(partial, Ok(None));
        let failed = vec_filled_by::<&str>(5, |_| Err("refused"));
        assert_eq!(failed, Err("refused"));
        assert_eq!(vec_filled_by::<()>(0, |_| Ok(())), Ok(Some(Vec::new())));
    }

    #[test]
    fn put_with_counts_only_what_was_written_into_its_own_room() {
        static OTHER: [u8; 4] = [7; 4];
        let out = vec_filled_by::<()>(8, |f| {
            f.put_with(4, |out| &*base64_simd::STANDARD.encode(b"hi", out))
                .unwrap();
            assert_eq!(f.filled(), 4);
            // A slice from elsewhere is not counted, whatever its length.
            assert!(f.put_with(4, |_| &OTHER[..]).is_none());
            assert!(f.put_with(4, |_| &OTHER[..2]).is_none());
            assert_eq!(f.filled(), 4);
            // Room past the end is refused before the writer runs.
            assert!(f.put_with(5, |_| unreachable!()).is_none());
            f.put_with(4, |out| &*base64_simd::STANDARD.encode(b"!", out))
                .unwrap();
            Ok(())
        });
        assert_eq!(out, Ok(Some(b"aGk=IQ==".to_vec())));
    }

    #[test]
    fn io_write_stops_at_the_end_of_the_buffer() {
        let out = vec_filled_by::<io::Error>(4, |f| {
            assert_eq!(f.write(b"abc")?, 3);
            assert_eq!(f.write(b"defg")?, 1, "only what fits");
            assert_eq!(f.write(b"h")?, 0, "a full buffer takes nothing");
            assert!(f.is_full());
            Ok(())
        })
        .unwrap();
        assert_eq!(out, Some(b"abcd".to_vec()));
    }
}
