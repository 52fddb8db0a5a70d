//! [`Rewrite`]: builds an outgoing message from a received one by splicing.
//!
//! A proxy changes a few bytes of what it forwards: it inserts a Via and a Record-Route,
//! decrements Max-Forwards, removes its own Route or Via. Each change is an edit (replace the
//! bytes `[start, end)` of the source with new bytes); [`Rewrite::apply`] copies everything else
//! unchanged. The edit list and its byte arena are reused from message to message, so after
//! warm-up a rewrite allocates nothing.

use std::io::Write;

#[derive(Debug, Clone, Copy)]
struct Edit {
    start: u32,
    end: u32,
    arena_start: u32,
    arena_end: u32,
    /// Order of insertion, so edits at the same position keep the order they were made in.
    seq: u32,
}

#[derive(Debug, Default)]
pub struct Rewrite {
    edits: Vec<Edit>,
    arena: Vec<u8>,
}

impl Rewrite {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn clear(&mut self) {
        self.edits.clear();
        self.arena.clear();
    }

    /// Replaces source bytes `[start, end)` with what `f` writes.
    pub fn replace(&mut self, start: usize, end: usize, f: impl FnOnce(&mut Vec<u8>)) {
        debug_assert!(start <= end);
        let arena_start = self.arena.len();
        f(&mut self.arena);
        let seq = self.edits.len() as u32;
        self.edits.push(Edit {
            start: start as u32,
            end: end as u32,
            arena_start: arena_start as u32,
            arena_end: self.arena.len() as u32,
            seq,
        });
    }

    /// Inserts what `f` writes before source byte `at`.
    pub fn insert(&mut self, at: usize, f: impl FnOnce(&mut Vec<u8>)) {
        self.replace(at, at, f)
    }

    /// Inserts a formatted line (or any text) before source byte `at`.
    pub fn insert_fmt(&mut self, at: usize, args: std::fmt::Arguments<'_>) {
        self.insert(at, |out| {
            // Writing into a Vec cannot fail.
            let _ = out.write_fmt(args);
        })
    }

    /// Removes source bytes `[start, end)`.
    pub fn delete(&mut self, start: usize, end: usize) {
        self.replace(start, end, |_| {})
    }

    /// Writes `src[..end]` with the edits applied into `out` (appending).
    pub fn apply(&mut self, src: &[u8], end: usize, out: &mut Vec<u8>) {
        self.apply_range(src, 0, end, out)
    }

    /// Writes `src[start..end]` with the edits that fall inside it applied into `out`
    /// (appending). Edits must not overlap; those are a bug in the caller and are skipped in
    /// release builds, as are edits outside the range.
    pub fn apply_range(&mut self, src: &[u8], start: usize, end: usize, out: &mut Vec<u8>) {
        self.edits.sort_unstable_by_key(|e| (e.start, e.seq));
        let mut cursor = start;
        for e in &self.edits {
            let (s, t) = (e.start as usize, e.end as usize);
            debug_assert!(s >= cursor || s < start, "overlapping edits");
            if s < cursor || t > end {
                continue;
            }
            out.extend_from_slice(&src[cursor..s]);
            out.extend_from_slice(&self.arena[e.arena_start as usize..e.arena_end as usize]);
            cursor = t;
        }
        out.extend_from_slice(&src[cursor..end]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_in_order() {
        let src = b"0123456789";
        let mut r = Rewrite::new();
        r.replace(2, 4, |o| o.extend_from_slice(b"ab"));
        r.insert(0, |o| o.extend_from_slice(b"<"));
        r.delete(8, 9);
        r.insert(0, |o| o.extend_from_slice(b"!"));
        let mut out = Vec::new();
        r.apply(src, src.len(), &mut out);
        assert_eq!(out, b"<!01ab45679");
    }

    #[test]
    fn truncates_at_end() {
        let mut r = Rewrite::new();
        r.insert_fmt(1, format_args!("{}", 7));
        let mut out = Vec::new();
        r.apply(b"abcdef", 3, &mut out);
        assert_eq!(out, b"a7bc");
    }
}
