//! The file sink's direct writes: whole blocks through `O_DIRECT`, a round's writes submitted
//! together, and what a file moved, cut short or failing does to them.

use super::tests::{BOTH, NEVER, csv_ids, dir, journal_sink, jsonl_count};
use super::*;
use crate::acc::direct::BLOCK;
use crate::acc::record::{ACC_COLUMNS, Field};
use std::fs::{self, OpenOptions};

/// An `acc` record whose from_tag has characters of 2, 3 and 4 bytes, longer as `n` grows.
fn wide_record(n: u64) -> Record {
    let id = format!("node-1-{n}");
    let tag = format!("ü€😀{}", "é".repeat((n % 37) as usize));
    let mut fields = vec![Field::Empty; ACC_COLUMNS.len()];
    fields[0] = Field::Text("node");
    fields[1] = Field::Text(&id);
    fields[2] = Field::Text("INVITE");
    fields[3] = Field::Text(&tag);
    Record::new("acc", &fields)
}

#[test]
fn with_the_journal_whole_blocks_go_straight_to_the_device_and_the_files_are_the_same() {
    let d = dir("direct");
    let plain = dir("direct-plain");
    let mut sink = journal_sink(&d, 1 << 20, Duration::from_millis(1));
    let mut written_through_the_cache = FileSink::new(&plain, BOTH, NEVER)
        .unwrap()
        .with_sync(SyncMode::File, 0)
        .unwrap();
    let mut n = 0;
    for round in 0..8u64 {
        let batch: Vec<Record> = (0..500 + round * 37)
            .map(|_| {
                n += 1;
                wide_record(n)
            })
            .collect();
        sink.write_batch(&batch, 0).unwrap();
        written_through_the_cache.write_batch(&batch, 0).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        // Whole blocks only: each file ends at a block boundary, its rest waiting.
        sink.write_waiting(false).unwrap();
        for ext in [CSV, JSONL] {
            let f = &sink.open[&("acc".to_string(), ext)];
            assert!(f.is_direct(), "{ext}: O_DIRECT on the test's filesystem");
            assert_eq!(f.bytes % BLOCK as u64, 0, "round {round}, {ext}");
            assert!(f.waiting() < BLOCK, "round {round}, {ext}");
            let len = fs::metadata(d.join(format!("acc.{ext}"))).unwrap().len();
            assert_eq!(len, f.bytes, "round {round}, {ext}");
        }
        if round % 3 == 2 {
            // Everything, the last partial block through the page cache: the next direct
            // write starts with that block read back.
            sink.write_waiting(true).unwrap();
        }
    }
    sink.sync().unwrap();
    sink.write_waiting(true).unwrap();
    for ext in [CSV, JSONL] {
        let name = format!("acc.{ext}");
        let direct = fs::read(d.join(&name)).unwrap();
        let cached = fs::read(plain.join(&name)).unwrap();
        assert!(direct == cached, "{name} differs");
    }
    assert_eq!(csv_ids(&d.join("acc.csv")).len() as u64, n);
    drop(sink);
    fs::remove_dir_all(&d).unwrap();
    fs::remove_dir_all(&plain).unwrap();
}

#[test]
fn a_file_moved_or_cut_short_while_a_line_is_in_it_in_part_gets_whole_lines_only() {
    for cut in [false, true] {
        let d = dir(&format!("direct-moved-{cut}"));
        let mut sink = journal_sink(&d, 1 << 20, Duration::from_millis(1));
        let batch: Vec<Record> = (1..=600).map(wide_record).collect();
        sink.write_batch(&batch, 0).unwrap();
        // Due when the commit writes the files, once: whole blocks, the rest waiting (a
        // second write would take the rest through the page cache).
        std::thread::sleep(Duration::from_millis(2));
        sink.sync().unwrap();
        let f = &sink.open[&("acc".to_string(), CSV)];
        assert!(f.skip > 0, "a block boundary inside a line");
        if cut {
            // logrotate's copytruncate.
            fs::copy(d.join("acc.csv"), d.join("acc.csv.1")).unwrap();
            File::create(d.join("acc.csv")).unwrap();
        } else {
            fs::rename(d.join("acc.csv"), d.join("acc.csv.1")).unwrap();
        }
        sink.write_waiting(true).unwrap();
        let old = fs::read_to_string(d.join("acc.csv.1")).unwrap();
        let new = fs::read_to_string(d.join("acc.csv")).unwrap();
        assert!(new.starts_with("node,id,"), "{cut}: the header first");
        let mut ids: Vec<String> = csv_ids(&d.join("acc.csv"));
        if cut {
            // The copy ends inside a line (logrotate copied what was there); the file
            // starts with that line whole.
            assert!(!old.ends_with('\n'));
            let whole = old.rsplit_once('\n').unwrap().0;
            ids.extend(
                whole
                    .lines()
                    .skip(1)
                    .map(|l| l.split(',').nth(1).unwrap().to_string()),
            );
        } else {
            // The moved file ends at a line's end: the line it had in part is in the new one.
            assert!(old.ends_with('\n'), "{cut}");
            ids.extend(csv_ids(&d.join("acc.csv.1")));
        }
        ids.sort_by_key(|id| id[7..].parse::<u64>().unwrap());
        let want: Vec<String> = (1..=600).map(|n| format!("node-1-{n}")).collect();
        assert_eq!(ids, want, "{cut}");
        drop(sink);
        fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn a_round_of_direct_writes_that_fails_in_one_file_is_in_no_file() {
    // As with the checkpoint through the page cache: the failing file must come after
    // others, and the map's order differs from one sink to the next.
    for n in 0..8 {
        let d = dir(&format!("direct-all-or-none-{n}"));
        let mut sink = journal_sink(&d, 4 << 20, Duration::from_secs(3600));
        // Enough in each of the four files for their whole blocks to go directly.
        let tables = ["acc", "missed_calls"];
        let batch = |from: u64| -> Vec<Record> {
            (from..from + 800)
                .map(|i| {
                    let mut r = wide_record(i);
                    if i % 2 == 1 {
                        r = Record::new(tables[1], &r.fields().collect::<Vec<_>>());
                    }
                    r
                })
                .collect()
        };
        sink.write_batch(&batch(1), 0).unwrap();
        sink.sync().unwrap();
        sink.settled(true).unwrap();
        // A round not yet committed, and one file whose disk is full for direct writes.
        sink.write_batch(&batch(801), 0).unwrap();
        for f in sink.open.values() {
            assert!(
                f.direct_ready(),
                "{}: enough for a direct write",
                f.path.display()
            );
        }
        let key = ("missed_calls".to_string(), JSONL);
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let real = sink.open.get_mut(&key).unwrap().swap_direct(full);
        let e = sink.checkpoint().unwrap_err();
        assert!(e.to_string().contains("missed_calls.jsonl"), "{e}");
        assert!(sink.full());
        for ext in [CSV, JSONL] {
            for table in tables {
                let text = fs::read_to_string(d.join(format!("{table}.{ext}"))).unwrap();
                let uncommitted = ["801", "1600"].iter().any(|i| {
                    text.contains(&format!("node-1-{i},"))
                        || text.contains(&format!("\"node-1-{i}\""))
                });
                assert!(
                    !uncommitted,
                    "sink {n}: {table}.{ext} has a record of the uncommitted round"
                );
            }
        }
        sink.open.get_mut(&key).unwrap().swap_direct(real);
        sink.checkpoint().unwrap();
        assert!(!sink.full());
        let mut ids = csv_ids(&d.join("acc.csv"));
        ids.extend(csv_ids(&d.join("missed_calls.csv")));
        ids.sort_by_key(|id| id[7..].parse::<u64>().unwrap());
        let want: Vec<String> = (1..=1600).map(|i| format!("node-1-{i}")).collect();
        assert_eq!(ids, want, "sink {n}: every record once");
        let lines = jsonl_count(&d.join("acc.jsonl")) + jsonl_count(&d.join("missed_calls.jsonl"));
        assert_eq!(lines, 1600, "sink {n}");
        drop(sink);
        fs::remove_dir_all(&d).unwrap();
    }
}
