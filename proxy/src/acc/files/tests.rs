//! The file sink: formats, rotation, torn lines, recovery (its direct writes: `direct_tests`).

use super::*;
use crate::acc::record::{ACC_COLUMNS, Field};
use std::fs::{self, OpenOptions};

pub(super) fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("siplb-acc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn record(table: &str, n: u64) -> Record {
    let id = format!("node-1-{n}");
    let mut fields = vec![Field::Empty; ACC_COLUMNS.len()];
    fields[0] = Field::Text("node");
    fields[1] = Field::Text(&id);
    fields[2] = Field::Text("INVITE");
    Record::new(table, &fields)
}

/// A sink on `d` (both formats, no rotation) that commits through a journal of `journal`
/// bytes, its files lagging behind it by up to `interval`.
pub(super) fn journal_sink(d: &Path, journal: u64, interval: Duration) -> FileSink {
    FileSink::new(d, BOTH, NEVER)
        .unwrap()
        .with_sync(SyncMode::Journal, journal)
        .unwrap()
        .with_write_interval(interval)
}

pub(super) const BOTH: Formats = Formats {
    csv: true,
    jsonl: true,
};
pub(super) const NEVER: Rotation = Rotation {
    max_bytes: 0,
    max_age_s: 0,
};

#[test]
fn records_go_to_their_tables_files_with_one_csv_header() {
    let d = dir("write");
    let mut sink = FileSink::new(&d, BOTH, NEVER).unwrap();
    sink.write_batch(&[record("acc", 1), record("missed_calls", 2)], 0)
        .unwrap();
    sink.write_batch(&[record("acc", 3)], 0).unwrap();
    sink.sync().unwrap();
    let csv = std::fs::read_to_string(d.join("acc.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("node,id,method"));
    assert!(lines[2].starts_with("node,node-1-3,INVITE"));
    let jsonl = std::fs::read_to_string(d.join("missed_calls.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 1);
    // A new sink on the same files appends, without a second header.
    let mut again = FileSink::new(&d, BOTH, NEVER).unwrap();
    again.write_batch(&[record("acc", 4)], 0).unwrap();
    let csv = std::fs::read_to_string(d.join("acc.csv")).unwrap();
    assert_eq!(csv.lines().filter(|l| l.starts_with("node,id")).count(), 1);
    assert_eq!(csv.lines().count(), 4);
}

#[test]
fn with_the_journal_a_lost_tail_comes_back_and_a_rotated_file_gets_nothing_old() {
    let d = dir("journal");
    let journal = |d: &Path, rotation| {
        FileSink::new(d, BOTH, rotation)
            .unwrap()
            .with_sync(SyncMode::Journal, 64 << 10)
            .unwrap()
    };
    let mut sink = journal(&d, NEVER);
    sink.write_batch(&[record("acc", 1)], 0).unwrap();
    sink.sync().unwrap();
    sink.write_batch(&[record("acc", 2), record("cdrs", 3)], 0)
        .unwrap();
    sink.sync().unwrap();
    let whole = std::fs::read(d.join("acc.csv")).unwrap();
    // A power cut: what only the journal had reached the disk of is gone.
    drop(sink);
    std::fs::write(d.join("acc.csv"), &whole[..whole.len() - 20]).unwrap();
    std::fs::remove_file(d.join("cdrs.jsonl")).unwrap();
    let mut sink = journal(&d, NEVER);
    assert_eq!(std::fs::read(d.join("acc.csv")).unwrap(), whole);
    assert!(!d.join("cdrs.jsonl").exists(), "a gone file is not made up");
    assert_eq!(sink.recover().unwrap(), 0);
    // Rotation checkpoints first: after it, a crash puts nothing into the new acc.csv.
    sink.rotation = Rotation {
        max_bytes: 1,
        max_age_s: 0,
    };
    sink.write_batch(&[record("acc", 4)], 1_000).unwrap();
    sink.write_batch(&[record("acc", 5)], 1_000).unwrap();
    sink.sync().unwrap();
    let rotated: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("acc-"))
        .collect();
    // The files kept from before the restart, past their size, are rotated before the
    // first write, and the next ones after it.
    assert_eq!(rotated.len(), 4, "acc.csv and acc.jsonl rotated twice");
    let new = std::fs::read_to_string(d.join("acc.csv")).unwrap();
    drop(sink);
    let _sink = journal(&d, NEVER);
    assert_eq!(std::fs::read_to_string(d.join("acc.csv")).unwrap(), new);
    assert_eq!(new.lines().count(), 2, "{new}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn with_a_write_interval_files_lag_the_journal_and_a_crash_loses_none_of_it() {
    let d = dir("lag");
    let journal = |d: &Path| {
        FileSink::new(d, BOTH, NEVER)
            .unwrap()
            .with_sync(SyncMode::Journal, 64 << 10)
            .unwrap()
            .with_write_interval(Duration::from_millis(50))
    };
    let lines = |d: &Path| {
        std::fs::read_to_string(d.join("acc.csv"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let mut sink = journal(&d);
    sink.write_batch(&[record("acc", 1)], 0).unwrap();
    sink.sync().unwrap();
    sink.write_batch(&[record("acc", 2)], 0).unwrap();
    sink.sync().unwrap();
    // Committed, not yet in the file (the header only).
    assert_eq!(lines(&d), 1);
    std::thread::sleep(Duration::from_millis(60));
    sink.write_waiting(false).unwrap();
    assert_eq!(lines(&d), 3);
    // Committed and then lost with the process: the next start writes them.
    sink.write_batch(&[record("acc", 3), record("acc", 4)], 0)
        .unwrap();
    sink.sync().unwrap();
    assert_eq!(lines(&d), 3);
    drop(sink);
    let mut sink = journal(&d);
    assert_eq!(lines(&d), 5);
    let jsonl = std::fs::read_to_string(d.join("acc.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 4);
    // A clean stop (the last checkpoint) writes what waits.
    sink.write_batch(&[record("acc", 5)], 0).unwrap();
    sink.sync().unwrap();
    sink.checkpoint().unwrap();
    assert_eq!(lines(&d), 6);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_commit_with_nothing_new_writes_every_committed_byte_to_the_files_however_young() {
    use crate::acc::sink::Sink;
    let d = dir("idle");
    let mut sink = journal_sink(&d, 64 << 10, Duration::from_secs(60));
    let lines = |name: &str| {
        std::fs::read_to_string(d.join(name))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    sink.write(&[record("acc", 1), record("acc", 2)], 0)
        .unwrap();
    Sink::sync(&mut sink).unwrap();
    assert_eq!(lines("acc.csv"), 1, "committed, waiting (the header only)");
    sink.idle().unwrap();
    assert_eq!(lines("acc.csv"), 3);
    assert_eq!(lines("acc.jsonl"), 2);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_torn_last_line_is_set_aside_once_and_the_rest_kept() {
    let d = dir("torn");
    std::fs::create_dir_all(&d).unwrap();
    let path = d.join("acc.jsonl");
    std::fs::write(
        &path,
        "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c\",\"meth",
    )
    .unwrap();
    let mut sink = FileSink::new(
        &d,
        Formats {
            csv: false,
            jsonl: true,
        },
        NEVER,
    )
    .unwrap();
    sink.write_batch(&[record("acc", 9)], 0).unwrap();
    assert_eq!(sink.torn_lines, 1);
    let text = std::fs::read_to_string(&path).unwrap();
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert_eq!(text.lines().count(), 3);
    let torn = std::fs::read_to_string(d.join("acc.jsonl.torn")).unwrap();
    assert_eq!(torn, "{\"id\":\"c\",\"meth\n");
    assert!(
        !set_aside_torn_line(&path).unwrap(),
        "whole lines are left alone"
    );
}

#[test]
fn recovery_at_start_sets_aside_torn_lines_of_current_files_only() {
    let d = dir("recover");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("acc.csv"), "h\r\nwhole\r\ntor").unwrap();
    std::fs::write(d.join("cdrs.jsonl"), "{}\n").unwrap();
    std::fs::write(d.join("acc-20261201T000000Z.csv"), "old\r\nx").unwrap();
    let mut sink = FileSink::new(&d, BOTH, NEVER).unwrap();
    assert_eq!(sink.recover().unwrap(), 1);
    assert_eq!(sink.torn_lines, 1);
    assert_eq!(
        std::fs::read_to_string(d.join("acc.csv")).unwrap(),
        "h\r\nwhole\r\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("acc.csv.torn")).unwrap(),
        "tor\n"
    );
    assert!(!d.join("acc-20261201T000000Z.csv.torn").exists());
    assert_eq!(sink.recover().unwrap(), 0, "once only");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn files_rotate_by_size_and_by_age_to_stamped_names() {
    let d = dir("rotate");
    let by_size = Rotation {
        max_bytes: 1,
        max_age_s: 0,
    };
    let mut sink = FileSink::new(
        &d,
        Formats {
            csv: true,
            jsonl: false,
        },
        by_size,
    )
    .unwrap();
    let t = 1_796_125_784_123;
    sink.write_batch(&[record("acc", 1)], t).unwrap();
    sink.write_batch(&[record("acc", 2)], t).unwrap();
    assert!(d.join("acc-20261201T114944Z.csv").exists());
    let fresh = std::fs::read_to_string(d.join("acc.csv")).unwrap();
    assert_eq!(
        fresh.lines().count(),
        2,
        "a header and the new record: {fresh}"
    );
    let by_age = Rotation {
        max_bytes: 0,
        max_age_s: 60,
    };
    let mut sink = FileSink::new(
        &d,
        Formats {
            csv: true,
            jsonl: false,
        },
        by_age,
    )
    .unwrap();
    sink.write_batch(&[record("cdrs", 1)], t).unwrap();
    sink.write_batch(&[record("cdrs", 2)], t + 59_000).unwrap();
    assert!(!d.join("cdrs-20261201T115043Z.csv").exists());
    sink.write_batch(&[record("cdrs", 3)], t + 60_000).unwrap();
    assert!(d.join("cdrs-20261201T115044Z.csv").exists());
}

#[test]
fn a_tables_csv_and_json_lines_files_rotate_together_and_pair_up() {
    let d = dir("rotate-pairs");
    // After one record, one of the two files is at the size and the other below it: the
    // other goes with it.
    let limit = {
        let probe = dir("rotate-pairs-probe");
        let mut sink = FileSink::new(&probe, BOTH, NEVER).unwrap();
        sink.write_batch(&[record("acc", 1)], 0).unwrap();
        sink.sync().unwrap();
        let len = |ext| {
            std::fs::metadata(probe.join(format!("acc.{ext}")))
                .unwrap()
                .len()
        };
        assert_ne!(len("csv"), len("jsonl"));
        len("csv").max(len("jsonl"))
    };
    let rotation = Rotation {
        max_bytes: limit,
        max_age_s: 0,
    };
    let mut sink = FileSink::new(&d, BOTH, rotation).unwrap();
    let t = 1_796_125_784_123;
    for n in 1..=3 {
        sink.write_batch(&[record("acc", n)], t).unwrap();
    }
    sink.sync().unwrap();
    // The record ids a file holds, whichever its format.
    let ids = |name: &str| -> Vec<String> {
        let text = std::fs::read_to_string(d.join(name)).unwrap();
        text.lines()
            .filter_map(|l| l.find("node-1-").map(|i| &l[i..i + 8]))
            .map(str::to_string)
            .collect()
    };
    // Two rotations in one second: the second takes `-1`, for both formats alike.
    for (csv, jsonl, id) in [
        (
            "acc-20261201T114944Z.csv",
            "acc-20261201T114944Z.jsonl",
            "node-1-1",
        ),
        (
            "acc-20261201T114944Z-1.csv",
            "acc-20261201T114944Z-1.jsonl",
            "node-1-2",
        ),
        ("acc.csv", "acc.jsonl", "node-1-3"),
    ] {
        assert_eq!(ids(csv), [id], "{csv}");
        assert_eq!(ids(jsonl), [id], "{jsonl}");
    }
}

/// A tail without a line end that spans several chunks (a crash can leave megabytes of zeros)
/// is set aside whole, in one pass, and the complete lines before it are kept.
#[test]
fn a_long_torn_tail_is_set_aside_whole() {
    let dir = std::env::temp_dir().join(format!("siplb-torn-long-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("acc.csv");
    let tail = vec![0u8; 1 << 20];
    let mut data = b"a,b\n1,2\n".to_vec();
    data.extend_from_slice(&tail);
    fs::write(&path, &data).unwrap();
    assert!(set_aside_torn_line(&path).unwrap());
    assert_eq!(fs::read(&path).unwrap(), b"a,b\n1,2\n");
    let mut aside = tail;
    aside.push(b'\n');
    assert_eq!(fs::read(dir.join("acc.csv.torn")).unwrap(), aside);
    assert!(!set_aside_torn_line(&path).unwrap(), "once");
    fs::remove_dir_all(&dir).unwrap();
}

/// Ids of the records in a CSV file (its header checked).
pub(super) fn csv_ids(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("node,id,"), "{text}");
    lines
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect()
}

pub(super) fn jsonl_count(path: &Path) -> usize {
    fs::read_to_string(path).unwrap().lines().count()
}

#[test]
fn a_file_moved_away_or_its_folder_removed_is_made_again_and_no_record_is_lost() {
    for (mode, interval) in [
        (SyncMode::File, Duration::ZERO),
        (SyncMode::Journal, Duration::ZERO),
        (SyncMode::Journal, Duration::from_secs(3600)),
    ] {
        let d = dir("moved");
        let mut sink = FileSink::new(&d, BOTH, NEVER)
            .unwrap()
            .with_sync(mode, 64 << 10)
            .unwrap()
            .with_write_interval(interval);
        sink.write_batch(&[record("acc", 1)], 0).unwrap();
        sink.sync().unwrap();
        sink.write_batch(&[record("acc", 2)], 0).unwrap();
        sink.sync().unwrap();
        // logrotate without copytruncate: both files moved away between two batches.
        sink.write_waiting(true).unwrap();
        fs::rename(d.join("acc.csv"), d.join("acc.csv.1")).unwrap();
        fs::rename(d.join("acc.jsonl"), d.join("acc.jsonl.1")).unwrap();
        sink.write_batch(&[record("acc", 3)], 0).unwrap();
        sink.sync().unwrap();
        sink.write_waiting(true).unwrap();
        assert_eq!(
            csv_ids(&d.join("acc.csv.1")),
            ["node-1-1", "node-1-2"],
            "{mode:?}"
        );
        assert_eq!(csv_ids(&d.join("acc.csv")), ["node-1-3"], "{mode:?}");
        assert_eq!(jsonl_count(&d.join("acc.jsonl")), 1, "{mode:?}");
        // The whole folder removed: made again, the journal too.
        fs::remove_dir_all(&d).unwrap();
        sink.write_batch(&[record("acc", 4), record("cdrs", 5)], 0)
            .unwrap();
        sink.sync().unwrap();
        sink.write_waiting(true).unwrap();
        assert_eq!(csv_ids(&d.join("acc.csv")), ["node-1-4"], "{mode:?}");
        assert_eq!(jsonl_count(&d.join("acc.jsonl")), 1, "{mode:?}");
        if mode == SyncMode::Journal {
            assert!(d.join(super::super::journal::NAME).exists());
            // The new journal holds what was committed since: a crash puts it back.
            sink.write_batch(&[record("acc", 6)], 0).unwrap();
            sink.sync().unwrap();
            sink.settled(true).unwrap();
            sink.write_waiting(true).unwrap();
            let whole = fs::read(d.join("acc.csv")).unwrap();
            drop(sink);
            // A power cut: the file's tail, which only the journal had reached the disk of.
            fs::write(d.join("acc.csv"), &whole[..whole.len() - 10]).unwrap();
            let _again = FileSink::new(&d, BOTH, NEVER)
                .unwrap()
                .with_sync(mode, 64 << 10)
                .unwrap();
            assert_eq!(
                csv_ids(&d.join("acc.csv")),
                ["node-1-4", "node-1-6"],
                "{mode:?}"
            );
        }
        fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn a_folder_in_a_files_place_is_an_error_naming_it_and_its_records_wait() {
    for (mode, interval) in [
        (SyncMode::File, Duration::ZERO),
        (SyncMode::Journal, Duration::from_secs(3600)),
    ] {
        let d = dir("isdir");
        let mut sink = FileSink::new(
            &d,
            BOTH,
            Rotation {
                max_bytes: 1,
                max_age_s: 0,
            },
        )
        .unwrap()
        .with_sync(mode, 64 << 10)
        .unwrap()
        .with_write_interval(interval);
        sink.rotation = NEVER;
        sink.write_batch(&[record("cdrs", 1)], 0).unwrap();
        sink.sync().unwrap();
        sink.write_waiting(true).unwrap();
        fs::remove_file(d.join("cdrs.csv")).unwrap();
        fs::create_dir(d.join("cdrs.csv")).unwrap();
        let failed = match mode {
            // Written with the batch: the batch fails whole, to be retried.
            SyncMode::File => sink.write_batch(&[record("cdrs", 2)], 0),
            // Written later: the commit holds it, the write to the file fails.
            _ => {
                sink.write_batch(&[record("cdrs", 2)], 0).unwrap();
                sink.sync().unwrap();
                sink.write_waiting(true)
            }
        };
        let e = failed.unwrap_err().to_string();
        assert!(
            e.contains("cdrs.csv") && e.contains("directory"),
            "{mode:?}: {e}"
        );
        if mode != SyncMode::File {
            assert!(sink.full(), "new calls refused meanwhile");
        }
        // Rotation by size moves siplb's own files only: never the folder.
        sink.rotation = Rotation {
            max_bytes: 1,
            max_age_s: 0,
        };
        assert!(sink.write_batch(&[record("cdrs", 3)], 0).is_err());
        assert!(d.join("cdrs.csv").is_dir());
        sink.rotation = NEVER;
        fs::remove_dir(d.join("cdrs.csv")).unwrap();
        match mode {
            SyncMode::File => {
                sink.write_batch(&[record("cdrs", 2), record("cdrs", 3)], 0)
                    .unwrap();
            }
            _ => {
                sink.write_batch(&[record("cdrs", 3)], 0).unwrap();
                sink.sync().unwrap();
                sink.write_waiting(true).unwrap();
                assert!(!sink.full());
            }
        }
        assert_eq!(
            csv_ids(&d.join("cdrs.csv")),
            ["node-1-2", "node-1-3"],
            "{mode:?}"
        );
        fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn one_sink_per_folder_whatever_its_sync() {
    let d = dir("lock");
    let sink = |mode| {
        FileSink::new(&d, BOTH, NEVER)
            .unwrap()
            .with_sync(mode, 64 << 10)
    };
    for (first, second) in [
        (SyncMode::File, SyncMode::File),
        (SyncMode::Filesystem, SyncMode::Journal),
        (SyncMode::Journal, SyncMode::File),
    ] {
        let held = sink(first).unwrap();
        let e = sink(second).err().expect("a second sink on the folder");
        assert!(
            e.to_string().contains("locked by another process"),
            "{first:?} then {second:?}: {e}"
        );
        drop(held);
        sink(second).unwrap();
    }
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn files_past_their_age_rotate_without_new_records_and_keep_their_age_across_a_restart() {
    let d = dir("aged");
    let hourly = Rotation {
        max_bytes: 0,
        max_age_s: 3600,
    };
    let now = unix_ms();
    let rotated = |d: &Path| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("acc-"))
            .collect();
        names.sort();
        names
    };
    let mut sink = FileSink::new(&d, BOTH, hourly).unwrap();
    sink.write_batch(&[record("acc", 1)], now).unwrap();
    sink.rotate_aged(now + 3_599_000).unwrap();
    assert!(rotated(&d).is_empty());
    // An hour on, no record since: rotated all the same, both formats together.
    sink.rotate_aged(now + 3_600_000).unwrap();
    assert_eq!(rotated(&d).len(), 2, "{:?}", rotated(&d));
    assert!(!d.join("acc.csv").exists());
    // A file from before a restart keeps its age: its first write an hour after it was
    // made rotates it first.
    sink.write_batch(&[record("acc", 2)], now).unwrap();
    drop(sink);
    let mut sink = FileSink::new(&d, BOTH, hourly).unwrap();
    let later = unix_ms() + 3_600_000;
    sink.write_batch(&[record("acc", 3)], later).unwrap();
    assert_eq!(rotated(&d).len(), 4, "{:?}", rotated(&d));
    assert_eq!(csv_ids(&d.join("acc.csv")), ["node-1-3"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_file_cut_short_in_place_gets_its_header_back_and_a_remade_folder_is_locked_again() {
    for mode in [SyncMode::File, SyncMode::Journal] {
        let d = dir("cut");
        let mut sink = FileSink::new(&d, BOTH, NEVER)
            .unwrap()
            .with_sync(mode, 64 << 10)
            .unwrap()
            .with_write_interval(Duration::from_secs(3600));
        sink.write_batch(&[record("acc", 1), record("acc", 2)], 0)
            .unwrap();
        sink.sync().unwrap();
        sink.write_waiting(true).unwrap();
        // logrotate's copytruncate: copied away, then cut to nothing in place.
        fs::copy(d.join("acc.csv"), d.join("acc.csv.1")).unwrap();
        File::create(d.join("acc.csv")).unwrap();
        sink.write_batch(&[record("acc", 3)], 0).unwrap();
        sink.sync().unwrap();
        sink.write_waiting(true).unwrap();
        assert_eq!(csv_ids(&d.join("acc.csv")), ["node-1-3"], "{mode:?}");
        // The folder removed and made again: a second sink on it is still refused.
        fs::remove_dir_all(&d).unwrap();
        sink.write_batch(&[record("acc", 4)], 0).unwrap();
        sink.sync().unwrap();
        sink.write_waiting(true).unwrap();
        let second = FileSink::new(&d, BOTH, NEVER)
            .unwrap()
            .with_sync(mode, 64 << 10);
        let e = second.err().expect("refused");
        assert!(
            e.to_string().contains("locked by another process"),
            "{mode:?}: {e}"
        );
        drop(sink);
        fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn with_the_journal_a_failed_write_of_committed_bytes_says_the_records_are_durable() {
    let d = dir("behind");
    let mut sink = journal_sink(&d, 64 << 10, Duration::from_millis(1));
    sink.write_batch(&[record("acc", 1)], 0).unwrap();
    sink.sync().unwrap();
    std::thread::sleep(Duration::from_millis(5));
    sink.sync().unwrap();
    fs::remove_file(d.join("acc.csv")).unwrap();
    fs::create_dir(d.join("acc.csv")).unwrap();
    sink.write_batch(&[record("acc", 2)], 0).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    // Committed to the journal; the file's write fails: the writer counts the records as
    // durable, and new calls are refused meanwhile.
    let e = sink.sync().unwrap_err();
    assert!(is_files_behind(&e), "{e}");
    assert!(e.to_string().contains("acc.csv"), "{e}");
    assert!(sink.full());
    fs::remove_dir(d.join("acc.csv")).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    sink.sync().unwrap();
    assert!(!sink.full());
    assert_eq!(csv_ids(&d.join("acc.csv")), ["node-1-2"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_checkpoint_whose_write_fails_leaves_the_pending_round_in_no_file() {
    // The failing file must come after others that were written: the map's order differs
    // from one sink to the next, so several sinks are tried.
    for n in 0..8 {
        let d = dir(&format!("all-or-none-{n}"));
        let mut sink = journal_sink(&d, 64 << 10, Duration::from_secs(3600));
        sink.write_batch(&[record("acc", 1), record("missed_calls", 2)], 0)
            .unwrap();
        sink.sync().unwrap();
        // A round not yet committed, and one file whose disk is full.
        sink.write_batch(&[record("acc", 3), record("missed_calls", 4)], 0)
            .unwrap();
        let key = ("missed_calls".to_string(), JSONL);
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let real = std::mem::replace(&mut sink.open.get_mut(&key).unwrap().file, full);
        let e = sink.checkpoint().unwrap_err();
        assert!(e.to_string().contains("missed_calls.jsonl"), "{e}");
        assert!(sink.full());
        for ext in [CSV, JSONL] {
            for table in ["acc", "missed_calls"] {
                let text = fs::read_to_string(d.join(format!("{table}.{ext}"))).unwrap();
                assert!(
                    !text.contains("node-1-3") && !text.contains("node-1-4"),
                    "sink {n}: {table}.{ext} has a record of the uncommitted round:\n{text}"
                );
            }
        }
        sink.open.get_mut(&key).unwrap().file = real;
        sink.checkpoint().unwrap();
        assert!(!sink.full());
        assert_eq!(csv_ids(&d.join("acc.csv")), ["node-1-1", "node-1-3"]);
        assert_eq!(
            csv_ids(&d.join("missed_calls.csv")),
            ["node-1-2", "node-1-4"]
        );
        assert_eq!(jsonl_count(&d.join("acc.jsonl")), 2);
        assert_eq!(jsonl_count(&d.join("missed_calls.jsonl")), 2);
        drop(sink);
        fs::remove_dir_all(&d).unwrap();
    }
}
