//! Times as the records write them: RFC 3339 UTC with milliseconds
//! (`2026-12-01T11:49:44.123Z`), and seconds with milliseconds (`61.237`).

use std::fmt::Write;

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Unix ms as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339_ms(unix_ms, &mut out);
    out
}

/// Writes `n` as `width` digits (zero padded; years and fields here fit).
fn digits(out: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let start = decimal(&mut buf, n).min(buf.len() - width);
    out.push_str(ascii(&buf[start..]));
}

/// Writes the decimal digits of `n` at the end of `buf`; where they start.
pub(super) fn decimal(buf: &mut [u8; 20], mut n: u64) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return i;
        }
    }
}

/// ASCII bytes as text (in one piece: pushing them a `char` at a time checks each, and a
/// checked conversion costs more than the digits).
pub(super) fn ascii(b: &[u8]) -> &str {
    debug_assert!(b.is_ascii());
    // SAFETY: only ASCII digits and punctuation come here, and ASCII is UTF-8.
    unsafe { std::str::from_utf8_unchecked(b) }
}

/// Two digits, zero padded (`n` < 100), into `at`.
fn put_two(at: &mut [u8], n: u64) {
    at[0] = b'0' + (n / 10 % 10) as u8;
    at[1] = b'0' + (n % 10) as u8;
}

/// Two digits, zero padded (`n` < 100).
fn two(out: &mut String, n: u64) {
    let mut b = [0u8; 2];
    put_two(&mut b, n);
    out.push_str(ascii(&b));
}

/// Appends unix ms as RFC 3339 UTC with milliseconds (no allocation: the hot path of the
/// writer).
pub fn write_rfc3339_ms(unix_ms: u64, out: &mut String) {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // The records of a day share its date: worked out once.
    let (day, date) = LAST_DAY.get();
    if day == days {
        out.push_str(ascii(&date));
    } else {
        let mut text = String::with_capacity(DATE);
        write_date(days as i64, &mut text);
        out.push_str(&text);
        // A year of more than four digits is not kept.
        if let Ok(date) = <[u8; DATE]>::try_from(text.as_bytes()) {
            LAST_DAY.set((days, date));
        }
    }
    let mut t = *b"00:00:00.000Z";
    put_two(&mut t[0..], rem / 3600);
    put_two(&mut t[3..], rem / 60 % 60);
    put_two(&mut t[6..], rem % 60);
    let ms = unix_ms % 1000;
    t[9] = b'0' + (ms / 100) as u8;
    put_two(&mut t[10..], ms % 100);
    out.push_str(ascii(&t));
}

/// The length of `YYYY-MM-DDT`.
const DATE: usize = 11;

thread_local! {
    /// The last day written, and its date (`2026-12-01T`).
    static LAST_DAY: std::cell::Cell<(u64, [u8; DATE])> =
        const { std::cell::Cell::new((u64::MAX, [0; DATE])) };
}

/// `YYYY-MM-DDT` of a day count since 1970-01-01.
fn write_date(days: i64, out: &mut String) {
    let (y, m, d) = civil(days);
    if (0..=9999).contains(&y) {
        digits(out, y as u64, 4);
    } else {
        let _ = write!(out, "{y:04}");
    }
    out.push('-');
    two(out, m.into());
    out.push('-');
    two(out, d.into());
    out.push('T');
}

/// Milliseconds as decimal seconds with milliseconds (`61237` → `61.237`).
pub fn seconds_ms(ms: u64) -> String {
    let mut out = String::with_capacity(12);
    write_seconds_ms(ms, &mut out);
    out
}

/// Appends milliseconds as decimal seconds with milliseconds.
pub fn write_seconds_ms(ms: u64, out: &mut String) {
    digits(out, ms / 1000, 1);
    out.push('.');
    digits(out, ms % 1000, 3);
}

/// Appends a number.
pub fn write_int(n: u64, out: &mut String) {
    digits(out, n, 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_in_place_as_formatted() {
        for ms in [
            0,
            999,
            1_000,
            61_237,
            1_796_125_784_123,
            253_402_300_799_999,
        ] {
            let mut a = String::new();
            write_rfc3339_ms(ms, &mut a);
            let secs = (ms / 1000) as i64;
            let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
            let (y, m, d) = civil(days);
            let want = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                rem / 3600,
                rem / 60 % 60,
                rem % 60,
                ms % 1000
            );
            assert_eq!(a, want);
            assert_eq!(seconds_ms(ms), format!("{}.{:03}", ms / 1000, ms % 1000));
        }
    }

    #[test]
    fn rfc3339_with_milliseconds_in_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_796_125_784_123), "2026-12-01T11:49:44.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn seconds_keep_their_milliseconds() {
        assert_eq!(seconds_ms(61_237), "61.237");
        assert_eq!(seconds_ms(5), "0.005");
        assert_eq!(seconds_ms(0), "0.000");
    }
}
