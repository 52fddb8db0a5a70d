use super::*;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

fn table(capacity: usize, default_limit: u32) -> ValueTable {
    ValueTable::new(capacity, default_limit, Default::default())
}

#[test]
fn count_stops_at_its_limit_and_gives_back() {
    let c = Count::new(2);
    assert_eq!(c.try_acquire(), Ok(()));
    assert_eq!(c.try_acquire(), Ok(()));
    assert_eq!(c.try_acquire(), Err(Denied::Limit));
    c.release();
    assert_eq!(c.try_acquire(), Ok(()));
    c.release();
    c.release();
    assert_eq!((c.get(), c.high_water()), (0, 2));
    let none = Count::new(0);
    assert_eq!(none.try_acquire(), Err(Denied::Limit));
}

#[test]
fn values_count_apart_with_their_own_or_the_default_limit() {
    let own = [(b"vip".to_vec().into_boxed_slice(), 3)]
        .into_iter()
        .collect();
    let t = ValueTable::new(10, 1, own);
    let a = t.try_acquire(b"alice").unwrap();
    assert_eq!(t.try_acquire(b"alice"), Err(Denied::Limit));
    let b = t.try_acquire(b"bob").unwrap();
    assert_ne!(a, b);
    for _ in 0..3 {
        t.try_acquire(b"vip").unwrap();
    }
    assert_eq!(t.try_acquire(b"vip"), Err(Denied::Limit));
    assert_eq!((t.get(b"alice"), t.get(b"vip"), t.get(b"carol")), (1, 3, 0));
    assert_eq!(t.total(), 5);
    t.release(a);
    assert_eq!(t.get(b"alice"), 0);
    assert_eq!(t.try_acquire(b"alice"), Ok(a), "same value, same slot");
    assert_eq!(t.values(), 3);
}

#[test]
fn a_full_table_refuses_new_values_until_one_is_idle() {
    let t = table(100, UNLIMITED);
    let places: Vec<Place> = (0..100)
        .map(|i| t.try_acquire(format!("user{i}").as_bytes()).unwrap())
        .collect();
    assert_eq!(t.try_acquire(b"user100"), Err(Denied::TableFull));
    // Values already in the table still get places.
    t.try_acquire(b"user7").unwrap();
    assert_eq!(t.get(b"user7"), 2);
    // Once every dialog of some values ended, a new value takes one of their slots.
    for p in &places {
        t.release(*p);
    }
    let p = t.try_acquire(b"user100").unwrap();
    assert_eq!(t.get(b"user100"), 1);
    assert_eq!(t.values(), 100);
    t.release(p);
}

#[test]
fn long_values_are_told_apart() {
    let t = table(10, 1);
    let a = [b'a'; 200];
    let mut b = a;
    b[199] = b'b';
    t.try_acquire(&a).unwrap();
    t.try_acquire(&b).unwrap();
    assert_eq!(t.try_acquire(&a), Err(Denied::Limit));
    assert_eq!((t.get(&a), t.get(&b)), (1, 1));
    // Same prefix and length as a slot's stored prefix, different value.
    assert_eq!(t.get(&a[..KEY_BYTES]), 0);
}

#[test]
fn a_zero_limit_admits_nobody() {
    let t = table(10, 0);
    assert_eq!(t.try_acquire(b"x"), Err(Denied::Limit));
    assert_eq!(t.values(), 0);
}

/// Threads race for places of a few values and give them back; an independent count of the
/// places held, changed right after each acquire and right before each release, never passes
/// the limit, and everything is back to zero at the end.
#[test]
fn racing_threads_never_pass_a_limit() {
    const LIMIT: u32 = 7;
    const VALUES: usize = 3;
    let threads = std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .max(4);
    let t = Arc::new(ValueTable::new(8, LIMIT, Default::default()));
    let total = Arc::new(Count::new(2 * LIMIT));
    let held: Arc<Vec<AtomicI64>> = Arc::new((0..VALUES).map(|_| AtomicI64::new(0)).collect());
    let most = Arc::new(AtomicI64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            let (t, total, held, most) = (t.clone(), total.clone(), held.clone(), most.clone());
            std::thread::spawn(move || {
                let mut mine: Vec<(usize, Place, bool)> = Vec::new();
                let mut x = 0x9e37_79b9u32 ^ (k as u32).wrapping_mul(0x85eb_ca6b);
                for _ in 0..20_000 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    if !x.is_multiple_of(3) || mine.is_empty() {
                        let v = x as usize % VALUES;
                        if let Ok(p) = t.try_acquire(format!("acct{v}").as_bytes()) {
                            let now = held[v].fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            let in_total = total.try_acquire().is_ok();
                            mine.push((v, p, in_total));
                        }
                    } else {
                        let (v, p, in_total) = mine.swap_remove(x as usize % mine.len());
                        held[v].fetch_sub(1, Ordering::SeqCst);
                        if in_total {
                            total.release();
                        }
                        t.release(p);
                    }
                }
                for (v, p, in_total) in mine {
                    held[v].fetch_sub(1, Ordering::SeqCst);
                    if in_total {
                        total.release();
                    }
                    t.release(p);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(most.load(Ordering::SeqCst) <= LIMIT as i64);
    for v in 0..VALUES {
        let name = format!("acct{v}");
        assert_eq!(t.get(name.as_bytes()), 0);
        assert!(t.high_water(name.as_bytes()) <= LIMIT);
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        LIMIT as i64,
        "the limit was reached"
    );
    assert_eq!(t.total(), 0);
    assert_eq!(total.get(), 0);
    assert!(total.high_water() <= 2 * LIMIT);
}

/// New values race into a small table whose slots are re-used as values go idle: no value is
/// ever held in two slots (its count would split and its limit double).
#[test]
fn racing_inserts_never_duplicate_a_value() {
    let t = Arc::new(ValueTable::new(16, 1, Default::default()));
    let handles: Vec<_> = (0..4)
        .map(|k| {
            let t = t.clone();
            std::thread::spawn(move || {
                let mut wins = 0u32;
                for round in 0..5_000u32 {
                    let v = format!("v{}", (round * 7 + k) % 40);
                    if let Ok(p) = t.try_acquire(v.as_bytes()) {
                        wins += 1;
                        // Limit 1: nobody else may hold this value now.
                        assert_eq!(t.get(v.as_bytes()), 1);
                        t.release(p);
                    }
                }
                wins
            })
        })
        .collect();
    let wins: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(wins > 0);
    assert_eq!(t.total(), 0);
}
