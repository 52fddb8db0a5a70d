//! A hashed timer wheel: the timers of one shard.
//!
//! Slots of [`RESOLUTION`] cover [`SLOTS`] × resolution ahead of the cursor (about 65 s: every
//! RFC 3261 timer and the call linger); deadlines further out wait in a small heap and move
//! into the wheel as it turns. Insertion is O(1); expiry visits only the slots that hold
//! something (a bitmap says which). Entries keep their exact deadline: nothing is handed out
//! before it is due, whatever the resolution, and [`TimerWheel::next_deadline`] is exact.
//! No clock is read here: time comes in as arguments.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Width of one slot.
pub const RESOLUTION: Duration = Duration::from_millis(4);
/// Number of slots (a power of two).
pub const SLOTS: usize = 16_384;
const WORDS: usize = SLOTS / 64;

#[derive(Debug)]
pub struct TimerWheel<T> {
    origin: Instant,
    slots: Vec<Vec<(Instant, T)>>,
    /// Bit k set: slot k holds entries.
    occupied: Vec<u64>,
    /// The tick expiry has reached: slots of earlier ticks hold nothing due.
    cursor: u64,
    /// Deadlines beyond the wheel's reach, earliest first.
    far: BinaryHeap<Reverse<(Instant, T)>>,
    len: usize,
}

impl<T: Copy + Ord> TimerWheel<T> {
    pub fn new(origin: Instant) -> Self {
        TimerWheel {
            origin,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: vec![0; WORDS],
            cursor: 0,
            far: BinaryHeap::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn tick_of(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_nanos() / RESOLUTION.as_nanos()) as u64
    }

    /// Schedules `item` at `at` (a deadline in the past fires at the next expiry).
    pub fn insert(&mut self, at: Instant, item: T) {
        self.len += 1;
        let tick = self.tick_of(at).max(self.cursor);
        if tick >= self.cursor + SLOTS as u64 {
            self.far.push(Reverse((at, item)));
        } else {
            self.put(tick, at, item);
        }
    }

    fn put(&mut self, tick: u64, at: Instant, item: T) {
        let slot = (tick % SLOTS as u64) as usize;
        self.slots[slot].push((at, item));
        self.occupied[slot / 64] |= 1 << (slot % 64);
    }

    /// Hands every entry due at `now` to `f`, in no particular order within a slot.
    pub fn expire(&mut self, now: Instant, mut f: impl FnMut(Instant, T)) {
        let now_tick = self.tick_of(now);
        if now_tick >= self.cursor {
            // Visit the occupied slots of ticks cursor..=now_tick (each slot at most once).
            let span = (now_tick - self.cursor).min(SLOTS as u64 - 1);
            let mut tick = self.cursor;
            while tick <= self.cursor + span {
                let Some(next) = self.next_occupied(tick, self.cursor + span) else {
                    break;
                };
                let slot = (next % SLOTS as u64) as usize;
                let mut i = 0;
                while i < self.slots[slot].len() {
                    let (at, item) = self.slots[slot][i];
                    if at <= now {
                        self.slots[slot].swap_remove(i);
                        self.len -= 1;
                        f(at, item);
                    } else {
                        i += 1;
                    }
                }
                if self.slots[slot].is_empty() {
                    self.occupied[slot / 64] &= !(1 << (slot % 64));
                }
                tick = next + 1;
            }
            // The current tick's slot may still hold entries due later in this tick.
            self.cursor = now_tick;
        }
        // Far deadlines that came within reach move into the wheel (or fire).
        while let Some(Reverse((at, _))) = self.far.peek() {
            let tick = self.tick_of(*at);
            if tick >= self.cursor + SLOTS as u64 {
                break;
            }
            let Reverse((at, item)) = self.far.pop().expect("peeked");
            if at <= now {
                self.len -= 1;
                f(at, item);
            } else {
                self.put(tick.max(self.cursor), at, item);
            }
        }
    }

    /// The first tick in `from..=to` whose slot is occupied.
    fn next_occupied(&self, from: u64, to: u64) -> Option<u64> {
        let mut tick = from;
        while tick <= to {
            let slot = (tick % SLOTS as u64) as usize;
            let word = self.occupied[slot / 64] >> (slot % 64);
            if word != 0 {
                let found = tick + word.trailing_zeros() as u64;
                return (found <= to).then_some(found);
            }
            // Jump to the start of the next word.
            tick += 64 - (slot % 64) as u64;
        }
        None
    }

    /// The earliest deadline held, exactly.
    pub fn next_deadline(&self) -> Option<Instant> {
        let near = self
            .next_occupied(self.cursor, self.cursor + SLOTS as u64 - 1)
            .and_then(|tick| {
                self.slots[(tick % SLOTS as u64) as usize]
                    .iter()
                    .map(|(at, _)| *at)
                    .min()
            });
        let far = self.far.peek().map(|Reverse((at, _))| *at);
        match (near, far) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(w: &mut TimerWheel<u32>, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        w.expire(now, |_, x| out.push(x));
        out.sort();
        out
    }

    #[test]
    fn nothing_fires_early_and_everything_fires() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let ms = Duration::from_millis;
        w.insert(t0 + ms(500), 1);
        w.insert(t0 + ms(501), 2);
        w.insert(t0 + ms(32_000), 3);
        w.insert(t0 + Duration::from_secs(43_200), 4);
        assert_eq!(w.next_deadline(), Some(t0 + ms(500)));
        assert!(drain(&mut w, t0 + ms(499)).is_empty());
        assert_eq!(drain(&mut w, t0 + ms(500)), [1]);
        assert_eq!(
            w.next_deadline(),
            Some(t0 + ms(501)),
            "same slot, later in it"
        );
        assert_eq!(drain(&mut w, t0 + ms(501)), [2]);
        assert_eq!(w.next_deadline(), Some(t0 + ms(32_000)));
        assert_eq!(drain(&mut w, t0 + ms(40_000)), [3]);
        assert_eq!(w.next_deadline(), Some(t0 + Duration::from_secs(43_200)));
        assert!(drain(&mut w, t0 + Duration::from_secs(43_199)).is_empty());
        assert_eq!(drain(&mut w, t0 + Duration::from_secs(43_200)), [4]);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn deadlines_before_the_origin_still_work() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0 + Duration::from_secs(100));
        w.insert(t0 + Duration::from_secs(1), 1);
        assert_eq!(w.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(drain(&mut w, t0).is_empty());
        assert_eq!(drain(&mut w, t0 + Duration::from_secs(1)), [1]);
    }

    #[test]
    fn past_deadlines_fire_at_the_next_expiry() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        assert!(drain(&mut w, t0 + Duration::from_secs(10)).is_empty());
        w.insert(t0 + Duration::from_secs(1), 7);
        assert_eq!(drain(&mut w, t0 + Duration::from_secs(10)), [7]);
    }

    #[test]
    fn a_long_jump_visits_every_slot_once() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        for i in 0..1000u32 {
            w.insert(t0 + Duration::from_millis(i as u64 * 37), i);
        }
        let fired = drain(&mut w, t0 + Duration::from_secs(3600));
        assert_eq!(fired.len(), 1000);
        assert!(w.is_empty());
    }

    /// Random inserts and expiries against a sorted list as the model.
    #[test]
    fn matches_a_simple_model() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let mut model: Vec<(Instant, u32)> = Vec::new();
        let mut state: u64 = 0x1234_5678_9abc_def1;
        let mut rnd = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut now = t0;
        for i in 0..20_000u32 {
            if rnd(3) > 0 {
                let at = now + Duration::from_millis(rnd(200_000));
                w.insert(at, i);
                model.push((at, i));
            } else {
                now += Duration::from_millis(rnd(5_000));
                let mut got = Vec::new();
                w.expire(now, |at, x| {
                    assert!(at <= now, "fired early");
                    got.push(x)
                });
                got.sort();
                let mut want: Vec<u32> = model
                    .iter()
                    .filter(|(at, _)| *at <= now)
                    .map(|(_, x)| *x)
                    .collect();
                want.sort();
                model.retain(|(at, _)| *at > now);
                assert_eq!(got, want);
                assert_eq!(w.next_deadline(), model.iter().map(|(at, _)| *at).min());
                assert_eq!(w.len(), model.len());
            }
        }
    }
}
