//! The four single-producer, single-consumer rings an AF_XDP socket shares with the kernel
//! (`Documentation/networking/af_xdp.rst`): each a power-of-two array of entries with a
//! producer and a consumer index, free-running `u32`s that wrap. User space produces into
//! the fill ring (frames the kernel may receive into) and the TX ring (frames to send), and
//! consumes from the RX ring (received frames) and the completion ring (sent frames it may
//! reuse).
//!
//! Each side caches the other side's index and reads the shared one (Acquire) only when the
//! cache says it cannot go on; it publishes its own index (Release) once per batch.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// One mapped ring: the pointers into the mapping the kernel described with
/// `XDP_MMAP_OFFSETS`, and the length of that mapping (unmapped on drop).
pub struct Ring<T> {
    map: NonNull<libc::c_void>,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut T,
    mask: u32,
    /// Producer side: our producer index. Consumer side: our consumer index.
    local: u32,
    /// Producer side: the kernel's consumer index, plus the ring size. Consumer side: the
    /// kernel's producer index. As last read.
    cached: u32,
}

// SAFETY: a ring is used by one thread at a time (its owner); the shared indices are atomics.
unsafe impl<T> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps the ring of `size` entries at page offset `pgoff` of socket `fd`, laid out as
    /// `off` says.
    ///
    /// # Safety
    /// `fd` is an AF_XDP socket whose ring at `pgoff` was set up with `size` entries of `T`.
    pub unsafe fn map(
        fd: libc::c_int,
        pgoff: u64,
        off: &libc::xdp_ring_offset,
        size: u32,
    ) -> io::Result<Ring<T>> {
        assert!(size.is_power_of_two());
        let map_len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: a shared mapping of the socket's ring; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = p as *mut u8;
        // SAFETY: the offsets lie within the mapping, as the kernel reported them.
        let (producer, consumer, flags, entries) = unsafe {
            (
                base.add(off.producer as usize) as *const AtomicU32,
                base.add(off.consumer as usize) as *const AtomicU32,
                base.add(off.flags as usize) as *const AtomicU32,
                base.add(off.desc as usize) as *mut T,
            )
        };
        Ok(Ring {
            map: NonNull::new(p).expect("mmap returned a null mapping"),
            map_len,
            producer,
            consumer,
            flags,
            entries,
            mask: size - 1,
            local: 0,
            cached: 0,
        })
    }

    fn size(&self) -> u32 {
        self.mask + 1
    }

    fn shared_producer(&self) -> &AtomicU32 {
        // SAFETY: points into the mapping, which lives as long as `self`.
        unsafe { &*self.producer }
    }

    fn shared_consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }

    /// Whether the kernel asks for a wake-up (`XDP_RING_NEED_WAKEUP`) to go on with this
    /// ring: a `sendto` for TX, a `recvfrom`/poll for the fill ring.
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: as above.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // --- producer side (fill, TX) -------------------------------------------------------

    /// Room for entries to produce, reading the kernel's consumer index if the cache says
    /// fewer than `want` are free.
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.cached.wrapping_sub(self.local);
        if free >= want {
            return free;
        }
        self.cached = self
            .shared_consumer()
            .load(Ordering::Acquire)
            .wrapping_add(self.size());
        self.cached.wrapping_sub(self.local)
    }

    /// Writes `entry` at the next producer slot; the caller has checked [`Ring::free`].
    /// Published by [`Ring::submit`].
    pub fn put(&mut self, entry: T) {
        let i = (self.local & self.mask) as usize;
        // SAFETY: `i` is within the ring; the slot is ours until we publish it.
        unsafe { self.entries.add(i).write(entry) };
        self.local = self.local.wrapping_add(1);
    }

    /// Publishes what [`Ring::put`] wrote.
    pub fn submit(&mut self) {
        self.shared_producer().store(self.local, Ordering::Release);
    }

    // --- consumer side (RX, completion) ---------------------------------------------------

    /// Entries ready to consume, reading the kernel's producer index when none are cached.
    pub fn ready(&mut self) -> u32 {
        let ready = self.cached.wrapping_sub(self.local);
        if ready > 0 {
            return ready;
        }
        self.cached = self.shared_producer().load(Ordering::Acquire);
        self.cached.wrapping_sub(self.local)
    }

    /// The next entry to consume; the caller has checked [`Ring::ready`]. Handed back by
    /// [`Ring::release`].
    pub fn take(&mut self) -> T {
        let i = (self.local & self.mask) as usize;
        // SAFETY: `i` is within the ring; the kernel wrote the slot before publishing it.
        let e = unsafe { self.entries.add(i).read() };
        self.local = self.local.wrapping_add(1);
        e
    }

    /// Tells the kernel the entries taken may be reused.
    pub fn release(&mut self) {
        self.shared_consumer().store(self.local, Ordering::Release);
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer used.
        unsafe { libc::munmap(self.map.as_ptr(), self.map_len) };
    }
}
