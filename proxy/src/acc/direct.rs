//! Durable block writes for the commit journal: buffers that start at a block boundary in
//! memory, and a write that returns once its bytes are on stable storage, through an
//! `O_DIRECT | O_DSYNC` descriptor when there is one, else buffered and `fdatasync`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The block `O_DIRECT` writes are aligned to, in memory, in the file and in length.
pub const BLOCK: usize = 4096;

/// Writes `data` at `at` and returns once it is durable: through the `O_DIRECT | O_DSYNC`
/// descriptor when there is one (given up for good if the filesystem refuses such a write),
/// else buffered and `fdatasync`.
pub fn write_durably(
    file: &File,
    direct: &mut Option<File>,
    data: &[u8],
    at: u64,
) -> io::Result<()> {
    if let Some(d) = direct {
        match d.write_all_at(data, at) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!("acc: the journal takes no O_DIRECT writes ({e}): buffered");
                *direct = None;
            }
            Err(e) => return Err(e),
        }
    }
    file.write_all_at(data, at)?;
    file.sync_data()
}

/// Bytes that start at a [`BLOCK`] boundary in memory, as `O_DIRECT` writes need.
#[derive(Default)]
pub struct Aligned {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn reserve(&mut self, more: usize) {
        let need = self.len + more;
        if self.start + need <= self.raw.len() {
            return;
        }
        let cap = need.max(2 * self.len).next_multiple_of(BLOCK);
        let mut raw = vec![0u8; cap + BLOCK];
        let start = raw.as_ptr().align_offset(BLOCK);
        raw[start..start + self.len].copy_from_slice(self.as_slice());
        self.raw = raw;
        self.start = start;
    }

    pub fn extend_from_slice(&mut self, b: &[u8]) {
        self.reserve(b.len());
        let at = self.start + self.len;
        self.raw[at..at + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The bytes and zeros after them up to a whole number of blocks.
    pub fn padded(&mut self) -> &[u8] {
        let n = self.len.next_multiple_of(BLOCK);
        self.reserve(n - self.len);
        self.raw[self.start + self.len..self.start + n].fill(0);
        &self.raw[self.start..self.start + n]
    }
}
