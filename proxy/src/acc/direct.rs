//! Durable block writes for the commit journal: buffers that start at a block boundary in
//! memory, a write that returns once its bytes are on stable storage (through an
//! `O_DIRECT | O_DSYNC` descriptor when there is one, else buffered and `fdatasync`), and the
//! io_uring that submits such a write without waiting for it.

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::FileExt;
use std::thread::ThreadId;

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

impl Clone for Aligned {
    /// The same bytes, at a block boundary of their own.
    fn clone(&self) -> Aligned {
        let mut a = Aligned::default();
        a.extend_from_slice(self.as_slice());
        a
    }
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

/// The io_uring that submits the journal's writes, one at a time. Made by the first
/// submission, on the thread that submits, with its completions' work deferred to that
/// thread's next look at the ring (`IORING_SETUP_DEFER_TASKRUN`): a write that completes does
/// not wake the writer thread from its sleep between two group commits (on a plain ring it
/// does, one wake-up per commit). Such a ring takes submissions from that thread only; on
/// another, [`Ring::submit_write`] declines and the caller writes at once. Kernels before 6.1
/// get a plain ring.
pub struct Ring {
    state: State,
}

/// What [`Ring::reap`] found.
pub enum Reaped {
    /// The write completed: bytes written, or a negated errno.
    Done(i32),
    /// Not yet.
    Pending,
    /// It was submitted on another thread, whose ring alone can reap it: its buffer must be
    /// given up ([`Ring::forget`]).
    Elsewhere,
}

enum State {
    Unmade,
    Made {
        ring: Box<io_uring::IoUring>,
        /// The only thread the ring serves (none for a plain ring).
        thread: Option<ThreadId>,
    },
    Off,
}

impl Ring {
    /// A ring made on first use.
    pub fn new() -> Ring {
        Ring {
            state: State::Unmade,
        }
    }

    /// No ring: every write is made at once.
    pub fn off() -> Ring {
        Ring { state: State::Off }
    }

    fn get(&mut self) -> Option<&mut io_uring::IoUring> {
        if let State::Unmade = self.state {
            let deferred = io_uring::IoUring::builder()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag()
                .build(4);
            self.state = match deferred {
                Ok(ring) => State::Made {
                    ring: Box::new(ring),
                    thread: Some(std::thread::current().id()),
                },
                Err(_) => match io_uring::IoUring::new(4) {
                    Ok(ring) => State::Made {
                        ring: Box::new(ring),
                        thread: None,
                    },
                    Err(e) => {
                        tracing::debug!("acc: no io_uring for the journal ({e})");
                        State::Off
                    }
                },
            };
        }
        match &mut self.state {
            State::Made { ring, thread }
                if thread.is_none_or(|t| t == std::thread::current().id()) =>
            {
                Some(ring)
            }
            _ => None,
        }
    }

    /// Submits a write of `data` to `fd` at `at`; false when it was not submitted.
    ///
    /// # Safety
    ///
    /// `data` must stay valid and untouched until [`Ring::reap`] has returned its result.
    pub unsafe fn submit_write(&mut self, fd: RawFd, data: &[u8], at: u64) -> bool {
        let Some(ring) = self.get() else {
            return false;
        };
        let write =
            io_uring::opcode::Write::new(io_uring::types::Fd(fd), data.as_ptr(), data.len() as u32)
                .offset(at)
                .build();
        // SAFETY: the caller keeps `data` until the completion is reaped.
        let pushed = unsafe { ring.submission().push(&write).is_ok() };
        pushed && ring.submit().is_ok()
    }

    /// What became of the write submitted; with `wait`, waits until it has completed.
    pub fn reap(&mut self, wait: bool) -> io::Result<Reaped> {
        let deferred = matches!(
            self.state,
            State::Made {
                thread: Some(_),
                ..
            }
        );
        let Some(ring) = self.get() else {
            return Ok(Reaped::Elsewhere);
        };
        loop {
            if let Some(c) = ring.completion().next() {
                return Ok(Reaped::Done(c.result()));
            }
            // A deferred ring's flag says when the completion's work is waiting to be run:
            // without it (and without waiting) there is nothing a system call would find.
            if !wait && deferred && !ring.submission().taskrun() {
                return Ok(Reaped::Pending);
            }
            // Runs the completion's deferred work, or waits for it.
            match ring.submit_and_wait(usize::from(wait)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if let Some(c) = ring.completion().next() {
                return Ok(Reaped::Done(c.result()));
            }
            if !wait {
                return Ok(Reaped::Pending);
            }
        }
    }

    /// Gives up a write submitted on another thread: `buffer` is never freed (the device may
    /// still read it), and the ring is closed (a new one is made on this thread when needed).
    pub fn forget(&mut self, buffer: Aligned) {
        std::mem::forget(buffer);
        self.state = State::Unmade;
    }
}
