//! A provided-buffer ring for multishot `RecvMsg`: the kernel picks a free buffer per
//! datagram and tells which in the completion; [`BufRing::recycle`] hands it back.

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, cqueue, squeue};
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

pub struct BufRing {
    /// The ring of entries the kernel reads (page aligned).
    ring: *mut BufRingEntry,
    ring_layout: Layout,
    /// The buffers themselves, `entries * size` bytes.
    bufs: *mut u8,
    bufs_layout: Layout,
    entries: u16,
    size: u32,
    bgid: u16,
    /// Local copy of the tail; published to the kernel by `publish`.
    tail: u16,
}

impl BufRing {
    /// Allocates and registers a ring of `entries` (power of two) buffers of `size` bytes.
    pub fn new(
        uring: &IoUring<squeue::Entry, cqueue::Entry>,
        entries: u16,
        size: u32,
        bgid: u16,
    ) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two(), "checked by the configuration");
        let ring_layout =
            Layout::from_size_align(entries as usize * size_of::<BufRingEntry>(), 4096)
                .map_err(|e| io::Error::other(e.to_string()))?;
        let bufs_layout = Layout::from_size_align(entries as usize * size as usize, 64)
            .map_err(|e| io::Error::other(e.to_string()))?;
        // SAFETY: both layouts have a non-zero size (entries ≥ 1, size ≥ 1).
        let ring = unsafe { alloc_zeroed(ring_layout) } as *mut BufRingEntry;
        // SAFETY: as above.
        let bufs = unsafe { alloc_zeroed(bufs_layout) };
        if ring.is_null() || bufs.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut br = BufRing {
            ring,
            ring_layout,
            bufs,
            bufs_layout,
            entries,
            size,
            bgid,
            tail: 0,
        };
        // SAFETY: the ring memory lives until `Drop`, after the ring is unregistered (the
        // worker drops the BufRing before the IoUring, see `Worker`).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, entries, bgid, 0)?
        };
        for bid in 0..entries {
            br.push(bid);
        }
        br.publish();
        Ok(br)
    }

    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// The bytes of buffer `bid`, `len` of them filled by the kernel.
    pub fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let len = len.min(self.size as usize);
        // SAFETY: bid < entries (the kernel only returns ids we provided) and the buffer is
        // not in the ring while the caller holds it (it was taken by the completion).
        unsafe {
            std::slice::from_raw_parts(
                self.bufs
                    .add(bid as usize % self.entries as usize * self.size as usize),
                len,
            )
        }
    }

    fn push(&mut self, bid: u16) {
        let mask = self.entries - 1;
        // SAFETY: index masked into the ring; the entry at the tail is not owned by the kernel.
        let e = unsafe { &mut *self.ring.add((self.tail & mask) as usize) };
        // SAFETY: bid < entries.
        e.set_addr(unsafe { self.bufs.add(bid as usize * self.size as usize) } as u64);
        e.set_len(self.size);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Gives buffer `bid` back (visible to the kernel after `publish`).
    pub fn recycle(&mut self, bid: u16) {
        self.push(bid % self.entries);
    }

    /// Publishes the tail to the kernel.
    pub fn publish(&mut self) {
        // SAFETY: the tail field lives inside the first entry of the ring (io_uring's layout).
        let tail = unsafe { &*(BufRingEntry::tail(self.ring) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts.
        unsafe {
            dealloc(self.ring as *mut u8, self.ring_layout);
            dealloc(self.bufs, self.bufs_layout);
        }
    }
}
