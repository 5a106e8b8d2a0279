//! `LockedBuf`: a guarded, locked (when possible), dump-excluded buffer, wiped when dropped;
//! its mapping comes from the pool when one fits, and goes back to it when dropped.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use super::mapping::{mapping_span, Mapping, CANARY_SIZE};
use super::status::BUFFERS_LIVE;
use super::{pool, wipe_raw};
use crate::error::{CoreError, CoreResult};

/// Smallest allocation made when a buffer first grows: avoids many tiny page-sized steps.
const MIN_GROW_CAPACITY: usize = 256;

/// A guarded, locked (when possible), dump-excluded buffer that is wiped when dropped.
pub struct LockedBuf {
    /// First data byte (dangling when `capacity == 0`: nothing is allocated). It sits
    /// `capacity` bytes before the mapping's trailing guard page.
    ptr: NonNull<u8>,
    capacity: usize,
    len: usize,
    /// Largest `len` before a `truncate` (which wipes what it cuts): everything ever written.
    high_water: usize,
    /// `None` when `capacity == 0`.
    pub(super) mapping: Option<Mapping>,
}

// SAFETY: LockedBuf owns its allocation exclusively (no other handle to it exists), so moving
// it to another thread moves the only access; the pool it returns to has its own lock.
unsafe impl Send for LockedBuf {}
// SAFETY: `&LockedBuf` only reads the allocation; every write needs `&mut LockedBuf`.
unsafe impl Sync for LockedBuf {}

impl LockedBuf {
    /// A buffer of exactly `len` bytes, all zero.
    pub fn zeroed(len: usize) -> CoreResult<LockedBuf> {
        let (mut buf, known_zero) = Self::allocate(len)?;
        if len > 0 && !known_zero {
            // SAFETY: capacity >= len; memsec filled it with garbage bytes, overwritten here.
            unsafe { std::ptr::write_bytes(buf.ptr.as_ptr(), 0, len) };
        }
        buf.len = len;
        Ok(buf)
    }

    /// A buffer of exactly `len` bytes for a caller that overwrites all of them: their content
    /// until then is unspecified (zero, or memsec's fill byte; never an earlier buffer's data,
    /// since pooled mappings are wiped), which spares zeroing megabytes only to overwrite them.
    pub fn for_overwrite(len: usize) -> CoreResult<LockedBuf> {
        let (mut buf, _) = Self::allocate(len)?;
        buf.len = len;
        Ok(buf)
    }

    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> CoreResult<LockedBuf> {
        Self::allocate(capacity).map(|(buf, _)| buf)
    }

    /// An empty buffer of exactly `capacity` bytes, from the pool when it has a fitting
    /// mapping; also says whether its bytes are known to be zero (pooled mappings are).
    fn allocate(capacity: usize) -> CoreResult<(LockedBuf, bool)> {
        if capacity == 0 {
            // Nothing to protect: no pages are allocated.
            BUFFERS_LIVE.fetch_add(1, Ordering::SeqCst);
            let buf = LockedBuf {
                ptr: NonNull::dangling(),
                capacity: 0,
                len: 0,
                high_water: 0,
                mapping: None,
            };
            return Ok((buf, true));
        }
        if capacity > isize::MAX as usize / 2 {
            return Err(CoreError::Memory(format!(
                "cannot allocate a locked buffer of {capacity} bytes"
            )));
        }
        let span = mapping_span(capacity);
        let (mapping, known_zero) = if pool::poolable(span) {
            match pool::take(capacity, span) {
                Some(mapping) => (mapping, true),
                None => {
                    // Fill the whole pages, so that the mapping can serve any request up to
                    // their size once it is pooled, and zero them: pooled memory is all zero.
                    let mapping = Mapping::allocate(span - CANARY_SIZE)?;
                    mapping.wipe();
                    (mapping, true)
                }
            }
        } else {
            (Mapping::allocate(capacity)?, false)
        };
        BUFFERS_LIVE.fetch_add(1, Ordering::SeqCst);
        // SAFETY: `capacity <= mapping.len`, so the data ends exactly at the guard page.
        let ptr = unsafe { mapping.base.add(mapping.len - capacity) };
        let buf = LockedBuf {
            ptr,
            capacity,
            len: 0,
            high_water: 0,
            mapping: Some(mapping),
        };
        Ok((buf, known_zero))
    }

    /// A buffer holding a copy of `data`.
    pub fn from_slice(data: &[u8]) -> CoreResult<LockedBuf> {
        let mut buf = Self::with_capacity(data.len())?;
        buf.extend_from_slice(data)?;
        Ok(buf)
    }

    /// Bytes in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no byte is in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes that fit without reallocating.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// True when the buffer's pages are locked in RAM (false: wipe-only).
    pub fn is_locked(&self) -> bool {
        self.mapping.as_ref().is_none_or(Mapping::locked_now)
    }

    /// The bytes in use.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len <= capacity` bytes are initialized; a dangling pointer is fine for len 0.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes in use, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Address of the first data byte (for the memory probes).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Make room for `additional` more bytes, at least doubling the capacity when it grows.
    pub fn reserve(&mut self, additional: usize) -> CoreResult<()> {
        let needed = self.needed(additional)?;
        if needed <= self.capacity {
            return Ok(());
        }
        let target = needed
            .max(self.capacity.saturating_mul(2))
            .max(MIN_GROW_CAPACITY);
        self.grow_to(target)
    }

    /// Make room for exactly `additional` more bytes (no amortized slack).
    pub fn reserve_exact(&mut self, additional: usize) -> CoreResult<()> {
        let needed = self.needed(additional)?;
        if needed <= self.capacity {
            return Ok(());
        }
        self.grow_to(needed)
    }

    /// Append `data`, growing when needed.
    #[inline]
    pub fn extend_from_slice(&mut self, data: &[u8]) -> CoreResult<()> {
        if data.len() > self.capacity - self.len {
            self.reserve(data.len())?;
        }
        // SAFETY: reserve guaranteed `len + data.len() <= capacity`; `data` cannot alias our
        // buffer mutably because we hold `&mut self`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                data.len(),
            );
        }
        self.len += data.len();
        Ok(())
    }

    /// Append what `fill` writes in place: it gets `max` writable bytes after the content
    /// (unspecified as in `for_overwrite`) and returns how many it wrote at their start, with
    /// its own result. All `max` bytes count as written, so the drop's wipe covers them even
    /// when `fill` reports fewer (or panics).
    pub fn append_with<T>(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> (usize, T),
    ) -> CoreResult<T> {
        if max > self.capacity - self.len {
            self.reserve(max)?;
        }
        self.high_water = self.high_water.max(self.len + max);
        // SAFETY: reserve guaranteed `len + max <= capacity`; every byte of the mapping is
        // initialised (zero or memsec's fill byte), and `&mut self` makes the access exclusive.
        let spare = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(self.len), max) };
        let (written, result) = fill(spare);
        self.len += written.min(max);
        Ok(result)
    }

    /// Shorten to `len` bytes, wiping the dropped tail. No effect when `len >= self.len()`.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.high_water = self.high_water.max(self.len);
            // SAFETY: `[len, self.len)` is inside the initialized part.
            unsafe { wipe_raw(self.ptr.as_ptr().add(len), self.len - len) };
            self.len = len;
        }
    }

    /// Wipe the whole content and set the length to 0 (capacity is kept).
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    fn needed(&self, additional: usize) -> CoreResult<usize> {
        self.len
            .checked_add(additional)
            .ok_or_else(|| CoreError::Memory("locked buffer size overflow".into()))
    }

    #[cold]
    fn grow_to(&mut self, capacity: usize) -> CoreResult<()> {
        let mut bigger = LockedBuf::with_capacity(capacity)?;
        if self.len > 0 {
            // SAFETY: `bigger` has room for `self.len` bytes; distinct allocations.
            unsafe {
                std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), bigger.ptr.as_ptr(), self.len);
            }
        }
        bigger.len = self.len;
        // The old buffer is wiped (and pooled or freed) when `bigger` (now holding it) drops.
        std::mem::swap(self, &mut bigger);
        Ok(())
    }
}

impl Drop for LockedBuf {
    fn drop(&mut self) {
        BUFFERS_LIVE.fetch_sub(1, Ordering::SeqCst);
        let Some(mapping) = self.mapping.take() else {
            return;
        };
        let mapping = if mapping.locked_now() && pool::poolable(mapping.span) {
            // Kept for reuse: wipe everything this buffer ever wrote (the mapping before `ptr`
            // is zero already). A mapping that is freed instead is wiped whole below, once.
            // SAFETY: `[ptr, ptr + max(len, high_water))` is inside the buffer's capacity.
            unsafe { wipe_raw(self.ptr.as_ptr(), self.len.max(self.high_water)) };
            mapping.check_canary();
            match pool::put(mapping) {
                Ok(()) => return,
                Err(mapping) => mapping,
            }
        } else {
            mapping
        };
        // Leaving our hands: wipe all of it, not only what this buffer wrote.
        mapping.wipe();
        mapping.free();
    }
}

impl Deref for LockedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl DerefMut for LockedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl std::io::Write for LockedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(data)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::OutOfMemory, e.to_string()))?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for LockedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedBuf")
            .field("len", &self.len)
            .field("locked", &self.is_locked())
            .finish_non_exhaustive()
    }
}
