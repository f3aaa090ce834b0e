//! A read position over untrusted bytes, for the v2 address block and the TLVs. Every
//! read returns `Option`, so bytes that run out are a value the caller turns into the
//! error for what it was reading, never a panic or an out-of-bounds index.

/// A read position over untrusted bytes; every read is checked.
pub(super) struct Cursor<'a> {
    pub(super) rest: &'a [u8],
    /// Position of `rest` from the start of the header, for error messages.
    pub(super) offset: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8], offset: usize) -> Self {
        Cursor { rest: bytes, offset }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        self.offset += n;
        Some(head)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>()?;
        self.rest = tail;
        self.offset += N;
        Some(*head)
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }
}
