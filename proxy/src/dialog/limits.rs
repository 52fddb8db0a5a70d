//! Concurrent-dialog counters shared by every worker: one per no-value profile, and a bounded
//! table of values per with-value profile (`account` among them).
//!
//! Strict and lock-free where calls are: taking a place is a compare-and-swap loop that never
//! lets a count pass its limit, however many workers race, and giving it back is one atomic
//! subtraction. Only two rare events take the table's mutex: the first call of a value not in
//! the table yet, and re-using the slot of a value that has no dialog left when the table is
//! full. Readers never wait for that mutex: a slot's identity is published with a generation
//! number, and a reader that finds the generation changed under it looks again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// No limit.
pub const UNLIMITED: u32 = u32::MAX;

/// Why a place was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The profile (or this value of it) is at its limit.
    Limit,
    /// The value is new and the value table has no room for it.
    TableFull,
    /// A fleet-wide limit (`[cluster]`): no place leased on this node is spare; one has been
    /// asked for, and the INVITE waits for the answer.
    Lease,
    /// A fleet-wide limit whose places cannot be leased now (Redis down, fail closed, or the
    /// lease task's queue full): 503 with Retry-After.
    Unavailable,
}

/// A no-value profile's count of dialogs.
#[derive(Debug)]
pub struct Count {
    count: AtomicU32,
    high: AtomicU32,
    /// Changed live by a reload; a count above a lowered limit only stops new dialogs.
    limit: AtomicU32,
}

impl Count {
    pub fn new(limit: u32) -> Count {
        Count {
            count: AtomicU32::new(0),
            high: AtomicU32::new(0),
            limit: AtomicU32::new(limit),
        }
    }

    /// A new limit (a reload): the dialogs already counted stay.
    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn try_acquire(&self) -> Result<(), Denied> {
        let mut c = self.count.load(Ordering::Relaxed);
        let limit = self.limit.load(Ordering::Relaxed);
        loop {
            if c >= limit {
                return Err(Denied::Limit);
            }
            match self
                .count
                .compare_exchange_weak(c, c + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.high.fetch_max(c + 1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(now) => c = now,
            }
        }
    }

    /// A place whatever the limit: a dialog that exists already (restored after a restart).
    pub fn acquire_anyway(&self) {
        let c = self.count.fetch_add(1, Ordering::AcqRel);
        self.high.fetch_max(c + 1, Ordering::Relaxed);
    }

    pub fn release(&self) {
        let before = self.count.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "released more than acquired");
    }

    pub fn get(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// The highest count ever reached.
    pub fn high_water(&self) -> u32 {
        self.high.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }
}

/// Bytes of a value kept in a slot; a longer value is kept as its first
/// `KEY_BYTES - 8` bytes and a hash of the whole.
const KEY_BYTES: usize = 56;
const KEY_WORDS: usize = KEY_BYTES / 8;
/// Slots looked at for one value (from its hash on).
const WINDOW: usize = 64;

// Slot word: generation (24 bits) | state (8 bits) | count (32 bits).
const FREE: u64 = 0;
const READY: u64 = 1;
/// Being (re)written under the mutex: readers skip it.
const WRITING: u64 = 2;

fn word(generation: u64, state: u64, count: u32) -> u64 {
    ((generation & 0xff_ffff) << 40) | (state << 32) | count as u64
}
fn state_of(w: u64) -> u64 {
    (w >> 32) & 0xff
}
fn count_of(w: u64) -> u32 {
    w as u32
}
/// Generation and state: what must not change between a reader's two looks.
fn identity(w: u64) -> u64 {
    w >> 32
}

/// A value as a slot holds it: fixed-size words plus its length.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    words: [u64; KEY_WORDS],
    len: u64,
}

impl Key {
    fn new(value: &[u8]) -> Key {
        let mut bytes = [0u8; KEY_BYTES];
        if value.len() <= KEY_BYTES {
            bytes[..value.len()].copy_from_slice(value);
        } else {
            let keep = KEY_BYTES - 8;
            bytes[..keep].copy_from_slice(&value[..keep]);
            bytes[keep..].copy_from_slice(&fnv64(value).to_le_bytes());
        }
        let mut words = [0u64; KEY_WORDS];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        }
        Key {
            words,
            len: value.len() as u64,
        }
    }
}

fn fnv64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| {
        (h ^ c as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

struct Slot {
    word: AtomicU64,
    key: [AtomicU64; KEY_WORDS],
    len: AtomicU64,
    high: AtomicU32,
    /// The value's own limit (or the table's default), set with the key, and the table's
    /// limits version it was read under (a reload bumps the version; the limit is then read
    /// again at the value's next acquire).
    limit: AtomicU32,
    limit_version: AtomicU32,
}

impl Slot {
    fn key_is(&self, k: &Key) -> bool {
        self.len.load(Ordering::Relaxed) == k.len
            && self
                .key
                .iter()
                .zip(k.words)
                .all(|(a, b)| a.load(Ordering::Relaxed) == b)
    }
}

/// `n` free slots, from zeroed memory: the allocator hands out fresh pages for a large table,
/// and only the pages of slots ever used become resident.
fn zeroed_slots(n: usize) -> Box<[Slot]> {
    let layout = std::alloc::Layout::array::<Slot>(n).expect("table size fits in memory");
    // SAFETY: `layout` has a non-zero size (n ≥ WINDOW). A `Slot` is made only of atomic
    // integers, for which all-zero bytes are a valid value (the same as `new(0)`), so the
    // zeroed allocation holds `n` initialised slots; the box takes ownership of exactly that
    // allocation with that layout.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout).cast::<Slot>();
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n))
    }
}

/// Where a value sits: given back to [`ValueTable::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place(u32);

/// The bounded table of one with-value profile: for each value seen, its count of dialogs.
pub struct ValueTable {
    slots: Box<[Slot]>,
    mask: usize,
    capacity: usize,
    /// Limit of values without one of their own.
    default_limit: AtomicU32,
    /// Values with a limit of their own: read when a value's limit is (re)read, written by a
    /// reload, never on a known value's acquire.
    own_limits: std::sync::RwLock<hashbrown::HashMap<Box<[u8]>, u32>>,
    /// Bumped by each reload of the limits.
    limits_version: AtomicU32,
    /// Serialises inserting and re-using slots; `used` counts the slots holding a value.
    insert: Mutex<usize>,
    /// Dialogs over all values, kept as places are taken and given back: a scrape of the
    /// metrics reads it instead of scanning every slot.
    total: AtomicU64,
}

impl ValueTable {
    /// A table for at most `capacity` values at once.
    pub fn new(
        capacity: usize,
        default_limit: u32,
        own_limits: hashbrown::HashMap<Box<[u8]>, u32>,
    ) -> ValueTable {
        let n = (capacity.max(1) * 2).next_power_of_two().max(WINDOW);
        ValueTable {
            slots: zeroed_slots(n),
            mask: n - 1,
            capacity,
            default_limit: AtomicU32::new(default_limit),
            own_limits: std::sync::RwLock::new(own_limits),
            limits_version: AtomicU32::new(0),
            insert: Mutex::new(0),
            total: AtomicU64::new(0),
        }
    }

    fn limit_for(&self, value: &[u8]) -> u32 {
        let own = self.own_limits.read().unwrap_or_else(|e| e.into_inner());
        own.get(value)
            .copied()
            .unwrap_or_else(|| self.default_limit.load(Ordering::Relaxed))
    }

    /// New limits (a reload): the default and the values' own. Counts stay; a value above a
    /// lowered limit only gets no new dialog.
    pub fn set_limits(&self, default_limit: u32, own: hashbrown::HashMap<Box<[u8]>, u32>) {
        *self.own_limits.write().unwrap_or_else(|e| e.into_inner()) = own;
        self.default_limit.store(default_limit, Ordering::Relaxed);
        self.limits_version.fetch_add(1, Ordering::Release);
    }

    /// The default limit and the values' own, as they are now.
    pub fn limits(&self) -> (u32, hashbrown::HashMap<Box<[u8]>, u32>) {
        let own = self.own_limits.read().unwrap_or_else(|e| e.into_inner());
        (self.default_limit.load(Ordering::Relaxed), own.clone())
    }

    fn window(&self, value: &[u8]) -> impl Iterator<Item = usize> + use<'_> {
        let start = fnv64(value) as usize;
        (0..WINDOW).map(move |i| (start + i) & self.mask)
    }

    /// The slot holding `key` and its word when seen, if any.
    fn find(&self, value: &[u8], key: &Key) -> Option<(usize, u64)> {
        for i in self.window(value) {
            let s = &self.slots[i];
            let w = s.word.load(Ordering::Acquire);
            if state_of(w) != READY {
                continue;
            }
            let same = s.key_is(key);
            // The key words are only rewritten after the generation changes: if it did not,
            // what was compared is the key of generation `w`.
            fence(Ordering::Acquire);
            let w2 = s.word.load(Ordering::Relaxed);
            if same && identity(w2) == identity(w) {
                return Some((i, w2));
            }
        }
        None
    }

    /// One more dialog with `value`, unless that would pass its limit.
    pub fn try_acquire(&self, value: &[u8]) -> Result<Place, Denied> {
        self.try_acquire_as(value, value)
    }

    /// [`try_acquire`](Self::try_acquire) for the entry `value` (the table's key), with the
    /// limit configured for `limit_of` (the value as the operator names it).
    pub fn try_acquire_as(&self, value: &[u8], limit_of: &[u8]) -> Result<Place, Denied> {
        self.acquire(value, limit_of, false)
    }

    /// A place for `value` whatever its limit (a dialog that exists already: restored after a
    /// restart); only a full table refuses.
    pub fn acquire_anyway(&self, value: &[u8], limit_of: &[u8]) -> Result<Place, Denied> {
        self.acquire(value, limit_of, true)
    }

    fn acquire(&self, value: &[u8], limit_of: &[u8], anyway: bool) -> Result<Place, Denied> {
        let key = Key::new(value);
        loop {
            let Some((i, mut w)) = self.find(value, &key) else {
                match self.insert_new(value, &key, limit_of, anyway)? {
                    Some(place) => return Ok(place),
                    None => continue, // inserted meanwhile by another worker: count there
                }
            };
            let s = &self.slots[i];
            let version = self.limits_version.load(Ordering::Acquire);
            let limit = if s.limit_version.load(Ordering::Relaxed) == version {
                s.limit.load(Ordering::Relaxed)
            } else {
                // The limits were reloaded since this value's was read.
                let limit = self.limit_for(limit_of);
                s.limit.store(limit, Ordering::Relaxed);
                s.limit_version.store(version, Ordering::Relaxed);
                limit
            };
            loop {
                if count_of(w) >= limit && !anyway {
                    return Err(Denied::Limit);
                }
                match s
                    .word
                    .compare_exchange_weak(w, w + 1, Ordering::AcqRel, Ordering::Relaxed)
                {
                    Ok(_) => {
                        s.high.fetch_max(count_of(w) + 1, Ordering::Relaxed);
                        self.total.fetch_add(1, Ordering::Relaxed);
                        return Ok(Place(i as u32));
                    }
                    // Re-used for another value meanwhile: look again.
                    Err(now) if identity(now) != identity(w) => break,
                    Err(now) => w = now,
                }
            }
        }
    }

    /// Under the mutex: puts `value` in a free slot of its window (or in that of a value
    /// with no dialog left, when the table is full) with a count of one. `None`: it was
    /// inserted by someone else first.
    fn insert_new(
        &self,
        value: &[u8],
        key: &Key,
        limit_of: &[u8],
        anyway: bool,
    ) -> Result<Option<Place>, Denied> {
        let mut used = self.insert.lock().unwrap_or_else(|e| e.into_inner());
        if self.find(value, key).is_some() {
            return Ok(None);
        }
        let limit = self.limit_for(limit_of);
        if limit == 0 && !anyway {
            return Err(Denied::Limit);
        }
        // The slot and its next generation.
        let mut target = None;
        if *used < self.capacity {
            target = self.window(value).find_map(|i| {
                let w = self.slots[i].word.load(Ordering::Relaxed);
                (state_of(w) == FREE).then_some((i, (w >> 40) + 1))
            });
        }
        let reused = target.is_none();
        if reused {
            // An idle value gives its slot up: its count must still be 0 when it does.
            target = self.window(value).find_map(|i| {
                let s = &self.slots[i];
                let w = s.word.load(Ordering::Relaxed);
                let g = (w >> 40) + 1;
                (state_of(w) == READY
                    && count_of(w) == 0
                    && s.word
                        .compare_exchange(
                            w,
                            word(g, WRITING, 0),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_ok())
                .then_some((i, g))
            });
        }
        let Some((i, generation)) = target else {
            return Err(Denied::TableFull);
        };
        let s = &self.slots[i];
        s.word
            .store(word(generation, WRITING, 0), Ordering::Relaxed);
        // Orders the switch to WRITING before the key writes below: a reader that sees any of
        // the new key bytes then sees the generation change when it looks at the word again
        // (the seqlock protocol; the reader has the matching acquire fence).
        fence(Ordering::Release);
        for (a, b) in s.key.iter().zip(key.words) {
            a.store(b, Ordering::Relaxed);
        }
        s.len.store(key.len, Ordering::Relaxed);
        s.limit.store(limit, Ordering::Relaxed);
        s.limit_version.store(
            self.limits_version.load(Ordering::Acquire),
            Ordering::Relaxed,
        );
        s.high.store(1, Ordering::Relaxed);
        s.word.store(word(generation, READY, 1), Ordering::Release);
        if !reused {
            *used += 1;
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Place(i as u32)))
    }

    /// The limit of `value` (its own, or the table's default).
    pub fn limit_of(&self, value: &[u8]) -> u32 {
        self.limit_for(value)
    }

    pub fn release(&self, place: Place) {
        let before = self.slots[place.0 as usize]
            .word
            .fetch_sub(1, Ordering::AcqRel);
        debug_assert!(count_of(before) > 0, "released more than acquired");
        self.total.fetch_sub(1, Ordering::Relaxed);
    }

    /// Dialogs with `value` now.
    pub fn get(&self, value: &[u8]) -> u32 {
        self.find(value, &Key::new(value))
            .map_or(0, |(_, w)| count_of(w))
    }

    /// The highest count `value` reached since it entered the table.
    pub fn high_water(&self, value: &[u8]) -> u32 {
        self.find(value, &Key::new(value))
            .map_or(0, |(i, _)| self.slots[i].high.load(Ordering::Relaxed))
    }

    /// Dialogs over all values.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Values held (with or without dialogs).
    pub fn values(&self) -> usize {
        *self.insert.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests;
