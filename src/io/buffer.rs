//! Byte buffers aligned to 4 KiB, so what they hold can be written with
//! direct I/O (which needs aligned memory, offsets and lengths). The copy
//! engine reads chunks into them and reuses them, so each is allocated and
//! first touched once; a local file gathers data writes in one.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// The alignment of every buffer (the largest logical block size direct
/// I/O asks for on Linux).
pub const ALIGN: usize = 4096;

/// A growable byte buffer whose start is [`ALIGN`]-aligned.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    capacity: usize,
    len: usize,
}

// SAFETY: the buffer owns its memory exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads through &[u8].
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer (no memory yet).
    pub fn new() -> Self {
        AlignedBuf {
            ptr: NonNull::dangling(),
            capacity: 0,
            len: 0,
        }
    }

    /// Whether memory has been allocated (a buffer worth keeping).
    pub fn has_memory(&self) -> bool {
        self.capacity > 0
    }

    /// Makes the buffer `len` bytes long. Growing past the capacity
    /// allocates anew (zeroed); otherwise the old bytes stay, to be
    /// overwritten by the caller.
    pub fn set_len(&mut self, len: usize) {
        if len > self.capacity {
            let capacity = len.div_ceil(ALIGN) * ALIGN;
            let layout = Layout::from_size_align(capacity, ALIGN).expect("buffer size");
            // SAFETY: the layout has a non-zero size (len > capacity >= 0).
            let ptr = unsafe { alloc_zeroed(layout) };
            let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
            self.release();
            self.ptr = ptr;
            self.capacity = capacity;
        }
        self.len = len;
    }

    /// Appends `data`, growing the allocation (keeping the content) when
    /// it is full.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        let (old, new) = (self.len, self.len + data.len());
        if new > self.capacity {
            let mut grown = AlignedBuf::new();
            grown.set_len(new.max(self.capacity * 2));
            grown[..old].copy_from_slice(self);
            *self = grown;
        }
        self.len = new;
        self[old..].copy_from_slice(data);
    }

    fn release(&mut self) {
        if self.capacity > 0 {
            let layout = Layout::from_size_align(self.capacity, ALIGN).expect("buffer size");
            // SAFETY: allocated with this very layout in set_len.
            unsafe { dealloc(self.ptr.as_ptr(), layout) };
            self.capacity = 0;
        }
    }
}

impl Default for AlignedBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        self.release();
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for capacity >= len initialised bytes
        // (zeroed at allocation), or dangling with len 0.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for deref, and we hold the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::{AlignedBuf, ALIGN};

    #[test]
    fn aligned_growable_and_reused() {
        let mut b = AlignedBuf::new();
        assert!(b.is_empty() && !b.has_memory());
        b.set_len(10);
        assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        assert!(b.iter().all(|&x| x == 0));
        b[9] = 7;
        b.set_len(5000);
        assert_eq!(b.len(), 5000);
        assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        let at = b.as_ptr();
        b.set_len(100);
        assert_eq!(b.as_ptr(), at, "shrinking keeps the memory");
        b.set_len(2);
        b.extend_from_slice(&[1, 2, 3]);
        assert_eq!(&b[..], &[0, 0, 1, 2, 3]);
        let big = vec![9u8; 3 * ALIGN];
        b.extend_from_slice(&big);
        assert_eq!(b.len(), 5 + 3 * ALIGN);
        assert_eq!(&b[..5], &[0, 0, 1, 2, 3]);
        assert!(b[5..].iter().all(|&x| x == 9));
        assert_eq!(b.as_ptr() as usize % ALIGN, 0);
    }
}
