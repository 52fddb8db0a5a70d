//! `--check`'s look at the folders a configuration writes into: each is tried as siplb will
//! use it (a file made and removed in it; a folder that does not exist yet made and removed
//! again), so that a folder siplb cannot write stops the check, not the start.

use super::Config;
use std::path::{Path, PathBuf};

/// The folders `cfg` writes into, each with the key that names it.
fn folders(cfg: &Config) -> Vec<(&'static str, PathBuf)> {
    let mut out = Vec::new();
    let parent = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    out.push(("control.socket", parent(&cfg.control_socket)));
    if let Some(acc) = &cfg.acc
        && (acc.sinks.files || acc.sinks.postgres.is_some())
    {
        out.push(("acc.dir", acc.dir.clone()));
    }
    if let Some(d) = &cfg.journal_dir {
        out.push(("dialog.journal_dir", d.clone()));
    }
    if let Some(f) = &cfg.events_file {
        out.push(("events.file", parent(f)));
    }
    out
}

/// Files already there that siplb appends to or replaces, with the key that names them.
fn files(cfg: &Config) -> Vec<(&'static str, PathBuf)> {
    let mut out = Vec::new();
    if let Some(d) = &cfg.journal_dir {
        out.push(("dialog.journal_dir", d.join("dialogs.jsonl")));
    }
    if let Some(acc) = cfg.acc.as_deref().filter(|a| a.sinks.files) {
        let mut tables = vec!["acc", "missed_calls"];
        if acc.cdrs {
            tables.push("cdrs");
        }
        tables.extend(acc.rules.iter().map(|r| r.table.as_str()));
        tables.sort_unstable();
        tables.dedup();
        let exts = [(acc.formats.csv, "csv"), (acc.formats.jsonl, "jsonl")];
        for t in tables {
            for (_, ext) in exts.iter().filter(|(on, _)| *on) {
                out.push(("acc.dir", acc.dir.join(format!("{t}.{ext}"))));
            }
        }
        if acc.sync_mode == crate::acc::files::SyncMode::Journal {
            out.push(("acc.dir", acc.dir.join(crate::acc::journal::NAME)));
        }
    }
    out
}

/// Every folder of `cfg` that siplb could not write into, and every file there it could not
/// write (one made immutable), as `key: path: why` lines.
pub fn unwritable(cfg: &Config) -> Vec<String> {
    let folders = folders(cfg).into_iter().filter_map(|(key, dir)| {
        try_folder(&dir)
            .err()
            .map(|why| format!("{key}: {}: {why}", dir.display()))
    });
    let files = files(cfg)
        .into_iter()
        .filter(|(_, f)| f.exists())
        .filter_map(|(key, f)| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&f)
                .err()
                .map(|e| format!("{key}: {}: cannot be written: {e}", f.display()))
        });
    folders.chain(files).collect()
}

/// Makes `dir` (and what is missing above it) if it does not exist, makes and removes a file
/// in it, and removes again the folders it made.
pub fn try_folder(dir: &Path) -> Result<(), String> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() && !d.exists() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    if !missing.is_empty() {
        let tried = std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot be made: {e}"))
            .and_then(|()| write_probe(dir));
        // Deepest first: each is empty once the one below it is gone.
        for m in &missing {
            let _ = std::fs::remove_dir(m);
        }
        return tried;
    }
    if !dir.is_dir() {
        return Err("not a folder".into());
    }
    write_probe(dir)
}

fn write_probe(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(".siplb-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("cannot be written: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("siplb-paths-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_folder_to_be_made_is_tried_and_left_as_it_was() {
        let d = scratch("make");
        let deep = d.join("a/b/c");
        try_folder(&deep).unwrap();
        assert!(!d.join("a").exists(), "the folders it made are gone");
        try_folder(&d).unwrap();
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "no probe left");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_where_a_folder_should_be_is_named() {
        let d = scratch("file");
        let f = d.join("cdrs");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(try_folder(&f).unwrap_err(), "not a folder");
        let e = try_folder(&f.join("below")).unwrap_err();
        assert!(e.starts_with("cannot be made: "), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn check_names_the_key_of_a_folder_it_cannot_write() {
        let d = scratch("cfg");
        std::fs::write(d.join("blocker"), b"x").unwrap();
        let src = format!(
            "{}\n[acc]\nflags = [\"INVITE\"]\nsinks = [\"files\"]\ndir = \"blocker/acc\"\n",
            super::super::tests::MIN
        );
        let cfg = Config::parse(&d.join("t.toml"), &src).unwrap();
        let problems = unwritable(&cfg);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!(
                "acc.dir: {}/blocker/acc: cannot be made",
                d.display()
            )),
            "{problems:?}"
        );
        std::fs::remove_file(d.join("blocker")).unwrap();
        assert!(unwritable(&cfg).is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn check_names_a_record_file_that_is_a_folder() {
        let d = scratch("recfile");
        let src = format!(
            "{}\n[acc]\nflags = [\"INVITE\"]\ncdrs = true\nsinks = [\"files\"]\ndir = \"acc\"\n",
            super::super::tests::MIN
        );
        let cfg = Config::parse(&d.join("t.toml"), &src).unwrap();
        std::fs::create_dir_all(d.join("acc/cdrs.csv")).unwrap();
        let problems = unwritable(&cfg);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!(
                "acc.dir: {}/acc/cdrs.csv: cannot be written",
                d.display()
            )),
            "{problems:?}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
