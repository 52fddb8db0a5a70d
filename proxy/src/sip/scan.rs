//! Line feeds found 64 bytes at a time.
//!
//! A header line is about 40 bytes; searching for its end byte by byte (or eight at a time)
//! was the largest single cost of parsing. [`LineFeeds`] instead classifies a whole 64-byte
//! block at once into a bit mask (SSE2 on x86-64, which every x86-64 CPU has) and then answers
//! each "next line feed" with a count of trailing zeros, so the cost per line is a few
//! instructions plus about 20 per 64 bytes of message.

/// A forward-only cursor over the line feeds of `buf`.
pub(super) struct LineFeeds<'a> {
    buf: &'a [u8],
    /// Start of the block whose mask is `bits`.
    base: usize,
    /// Bit `i` set: `buf[base + i]` is a line feed.
    bits: u64,
}

impl<'a> LineFeeds<'a> {
    pub(super) fn new(buf: &'a [u8], from: usize) -> LineFeeds<'a> {
        LineFeeds {
            buf,
            base: from,
            bits: block_mask(buf, from),
        }
    }

    /// The first line feed at or after `from`. `from` must not be less than in the previous call
    /// (nor than the `from` of [`new`](Self::new)).
    #[inline]
    pub(super) fn next(&mut self, from: usize) -> Option<usize> {
        debug_assert!(from >= self.base || self.bits == 0);
        loop {
            let skip = from.saturating_sub(self.base);
            if skip < 64 {
                let bits = self.bits & (u64::MAX << skip);
                if bits != 0 {
                    return Some(self.base + bits.trailing_zeros() as usize);
                }
            }
            self.base += 64;
            if self.base >= self.buf.len() {
                // Park at the end so that later calls find nothing too.
                self.base = self.buf.len().max(from);
                self.bits = 0;
                return None;
            }
            self.bits = block_mask(self.buf, self.base);
        }
    }
}

/// The line feed mask of the 64 bytes at `base` (bytes past the end of `buf` count as none).
#[inline]
fn block_mask(buf: &[u8], base: usize) -> u64 {
    match buf.get(base..base + 64) {
        Some(block) => lf_mask(block.try_into().expect("64 bytes")),
        None => {
            let mut block = [0u8; 64];
            let tail = buf.get(base..).unwrap_or(&[]);
            block[..tail.len()].copy_from_slice(tail);
            lf_mask(&block)
        }
    }
}

/// The colons and the spaces or tabs among the 16 bytes at `pos`, as bit masks (bit `i` for
/// `buf[pos + i]`); `None` when fewer than 16 bytes are left. Enough for the head of a header
/// line: its name, the colon and the white space after it.
#[inline]
pub(super) fn line_head(buf: &[u8], pos: usize) -> Option<(u32, u32)> {
    let head: &[u8; 16] = buf.get(pos..pos + 16)?.try_into().ok()?;
    Some(head_masks(head))
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn head_masks(head: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline; `head` has 16 readable bytes and
    // `_mm_loadu_si128` has no alignment requirement.
    unsafe {
        let v = _mm_loadu_si128(head.as_ptr().cast::<__m128i>());
        let colon = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b':' as i8)));
        let ws = _mm_or_si128(
            _mm_cmpeq_epi8(v, _mm_set1_epi8(b' ' as i8)),
            _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\t' as i8)),
        );
        (colon as u32, _mm_movemask_epi8(ws) as u32)
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn head_masks(head: &[u8; 16]) -> (u32, u32) {
    head_masks_scalar(head)
}

/// The portable definition of [`head_masks`].
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn head_masks_scalar(head: &[u8; 16]) -> (u32, u32) {
    head.iter().enumerate().fold((0, 0), |(c, w), (i, &b)| {
        (
            c | (u32::from(b == b':') << i),
            w | (u32::from(b == b' ' || b == b'\t') << i),
        )
    })
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn lf_mask(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline, so these intrinsics are available on every
    // CPU this target runs on; `block` has 64 readable bytes, so the 16 at offset 16·i (i < 4)
    // are in bounds, and `_mm_loadu_si128` has no alignment requirement.
    unsafe {
        let lf = _mm_set1_epi8(b'\n' as i8);
        let mut mask = 0u64;
        for i in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * i).cast::<__m128i>());
            mask |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, lf)) as u16) << (16 * i);
        }
        mask
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn lf_mask(block: &[u8; 64]) -> u64 {
    lf_mask_scalar(block)
}

/// The portable definition of [`lf_mask`].
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn lf_mask_scalar(block: &[u8; 64]) -> u64 {
    block
        .iter()
        .enumerate()
        .fold(0, |m, (i, &b)| m | (u64::from(b == b'\n') << i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lfs(buf: &[u8], from: usize) -> Vec<usize> {
        let mut lfs = LineFeeds::new(buf, from);
        let mut out = Vec::new();
        let mut pos = from;
        while let Some(lf) = lfs.next(pos) {
            out.push(lf);
            pos = lf + 1;
        }
        // Once past the end, it stays there.
        assert_eq!(lfs.next(buf.len()), None);
        out
    }

    #[test]
    fn finds_every_line_feed_across_blocks_and_in_the_tail() {
        // Pseudo-random bytes with a line feed about every 23, over lengths around the block
        // size, from several starting offsets.
        let mut x = 0x9e37_79b9u32;
        let bytes: Vec<u8> = (0..700)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if x.is_multiple_of(23) {
                    b'\n'
                } else {
                    x as u8 | 1
                }
            })
            .collect();
        for len in [0, 1, 63, 64, 65, 127, 128, 129, 300, 700] {
            let buf = &bytes[..len];
            for from in [0, 1, 7, 63, 64].into_iter().filter(|f| *f <= len) {
                let want: Vec<usize> = (from..len).filter(|&i| buf[i] == b'\n').collect();
                assert_eq!(all_lfs(buf, from), want, "len {len} from {from}");
            }
        }
    }

    #[test]
    fn skipping_lines_without_asking_for_them() {
        let buf = b"a\nb\nc\n".repeat(40);
        let mut lfs = LineFeeds::new(&buf, 0);
        assert_eq!(lfs.next(0), Some(1));
        // Jump over several blocks at once.
        assert_eq!(lfs.next(200), Some(201));
        assert_eq!(lfs.next(202), Some(203));
    }

    #[test]
    fn the_simd_mask_is_the_portable_one() {
        let mut block = [b'x'; 64];
        for i in [0, 5, 15, 16, 31, 32, 47, 48, 62, 63] {
            block[i] = b'\n';
        }
        block[20] = b'\n' | 0x80;
        block[21] = 0;
        assert_eq!(lf_mask(&block), lf_mask_scalar(&block));
        assert_eq!(lf_mask(&[b'\n'; 64]), u64::MAX);
        assert_eq!(lf_mask(&[0; 64]), 0);
    }

    #[test]
    fn the_simd_head_masks_are_the_portable_ones() {
        for head in [
            b"Via: SIP/2.0/UDP",
            b"To \t: <sip:a@b>;",
            b"::::    \t\t\t\t::  ",
            b"\xba\xa0\x89:\x20\t\n\r01234567",
        ] {
            assert_eq!(head_masks(head), head_masks_scalar(head), "{head:?}");
        }
        assert_eq!(line_head(b"short: line", 0), None);
        assert_eq!(line_head(b"xxVia: SIP/2.0/UDP", 2), Some((1 << 3, 1 << 4)));
    }
}
