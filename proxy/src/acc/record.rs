//! The records: a transaction record (tables `acc`, `missed_calls`, or one a rule names) and
//! the CDR of a call (table `cdrs`), each a row of typed fields in the fixed column order.

use super::encode::json_text;
use super::time::{ascii, decimal, rfc3339_ms, seconds_ms, write_int};
use crate::proxy::event::{DialogRecord, EndedBy, Parties, TxnOutcome};
use crate::proxy::target::Target;
use std::fmt::Write;

/// Columns of `acc`, `missed_calls` and every other transaction table, in order.
pub const ACC_COLUMNS: [&str; 17] = [
    "node",
    "id",
    "method",
    "from_tag",
    "to_tag",
    "callid",
    "sip_code",
    "sip_reason",
    "time",
    "src_user",
    "src_domain",
    "src_ip",
    "dst_ouser",
    "dst_user",
    "dst_domain",
    "account",
    "gateway",
];

/// Columns of `cdrs`, in order.
pub const CDR_COLUMNS: [&str; 30] = [
    "node",
    "id",
    "callid",
    "from_tag",
    "to_tag",
    "src_user",
    "src_domain",
    "src_ip",
    "dst_ouser",
    "dst_user",
    "dst_domain",
    "account",
    "gateway",
    "direction",
    "attempts",
    "invite_time",
    "forward_time",
    "first_reply_time",
    "ringing_time",
    "answer_time",
    "end_time",
    "duration",
    "billsec",
    "pdd_ms",
    "sip_code",
    "sip_reason",
    "q850_cause",
    "disposition",
    "ended_by",
    "vars",
];

/// One field of a record, as the sinks read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// No value (an empty CSV field, JSON `null`).
    Empty,
    Text(&'a str),
    Int(u64),
    /// Seconds with milliseconds, kept as milliseconds.
    Seconds(u64),
    /// An RFC 3339 UTC time, kept as Unix ms.
    Time(u64),
    /// A JSON object (the dialog variables), as JSON text.
    Json(&'a str),
}

impl Field<'_> {
    fn time(ms: u64) -> Field<'static> {
        if ms == 0 {
            Field::Empty
        } else {
            Field::Time(ms)
        }
    }

    /// As a CSV or log field: the value's text (empty for none).
    pub fn as_text(&self) -> String {
        match self {
            Field::Empty => String::new(),
            Field::Text(s) | Field::Json(s) => (*s).to_string(),
            Field::Int(n) => n.to_string(),
            Field::Seconds(ms) => seconds_ms(*ms),
            Field::Time(ms) => rfc3339_ms(*ms),
        }
    }
}

/// A field as a record keeps it: text as a range of the record's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Empty,
    Text(u32, u32),
    Int(u64),
    Seconds(u64),
    Time(u64),
    Json(u32, u32),
}

/// A record for a table: its fields in the order of [`ACC_COLUMNS`] or [`CDR_COLUMNS`].
///
/// The table's name and every text field share one string, so that a record is two
/// allocations whatever its width: records are made by the workers and freed by the writer
/// thread, and each allocation freed on another thread costs both (measured in
/// docs/BENCHMARKS.md, "Accounting").
#[derive(Debug, Clone)]
pub struct Record {
    text: String,
    table_len: u32,
    /// The worker that made it, to which the writer hands it back for reuse once written
    /// ([`NO_ORIGIN`]: none).
    origin: u16,
    slots: Vec<Slot>,
}

/// The origin of a record no worker made (tests, replays): it is not handed back.
pub const NO_ORIGIN: u16 = u16::MAX;

/// A record whose buffers grew past these is freed rather than kept for reuse.
const REUSE_TEXT: usize = 4096;
const REUSE_SLOTS: usize = 64;

impl PartialEq for Record {
    /// The same table and fields, whoever made them.
    fn eq(&self, other: &Record) -> bool {
        self.text == other.text && self.table_len == other.table_len && self.slots == other.slots
    }
}

impl Eq for Record {}

impl Record {
    /// A record of `fields` for `table` (used where records are not built field by field:
    /// tests, replays).
    pub fn new(table: &str, fields: &[Field<'_>]) -> Record {
        let mut b = Builder::new(table, fields.len(), 0);
        for f in fields {
            b.field(*f);
        }
        b.finish()
    }

    /// Asks the CPU to bring the record's text and fields into its cache ahead of use: a
    /// record is made on a worker's core and read on the writer's, where every line of it
    /// is otherwise a cache miss met one at a time.
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let lines = |p: *const u8, len: usize| {
                for off in (0..len).step_by(64) {
                    // SAFETY: a prefetch is a hint that never faults, and the address is
                    // inside this record's live allocation.
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off).cast()) };
                }
            };
            lines(self.text.as_ptr(), self.text.len());
            lines(
                self.slots.as_ptr().cast(),
                std::mem::size_of_val(self.slots.as_slice()),
            );
        }
    }

    /// The table the record goes to.
    pub fn table(&self) -> &str {
        &self.text[..self.table_len as usize]
    }

    /// How many fields it has.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn read(&self, s: Slot) -> Field<'_> {
        match s {
            Slot::Empty => Field::Empty,
            Slot::Text(a, b) => Field::Text(self.range(a, b)),
            Slot::Int(n) => Field::Int(n),
            Slot::Seconds(ms) => Field::Seconds(ms),
            Slot::Time(ms) => Field::Time(ms),
            Slot::Json(a, b) => Field::Json(self.range(a, b)),
        }
    }

    /// The text of a field. Read for every field of every record the writer encodes, where
    /// a checked slice's bounds and character boundaries were a tenth of the encoding.
    #[inline]
    fn range(&self, a: u32, b: u32) -> &str {
        let (a, b) = (a as usize, b as usize);
        debug_assert!(self.text.get(a..b).is_some());
        // SAFETY: a slot's range is only ever made by `Builder::write` (private to this
        // module, as are the writers it is given, which only append), from the text's length
        // before and after whole strings were appended to it: both ends are within the text
        // and on character boundaries. The text is only appended to while the record is
        // built, and cleared together with its slots when it is reused.
        unsafe { self.text.get_unchecked(a..b) }
    }

    /// The text of its text fields, in one piece, up to the last field when that is JSON (the
    /// dialog's variables, always the CDR's last): what the encoders look through at once
    /// for a byte either format quotes or escapes.
    pub(super) fn texts(&self) -> &str {
        let end = match self.slots.last() {
            Some(Slot::Json(a, _)) => *a as usize,
            _ => self.text.len(),
        };
        &self.text[self.table_len as usize..end]
    }

    /// Its fields, in column order.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = Field<'_>> + '_ {
        self.slots.iter().map(|s| self.read(*s))
    }

    /// The column names of this record's fields.
    pub fn columns(&self) -> &'static [&'static str] {
        if self.slots.len() == CDR_COLUMNS.len() {
            &CDR_COLUMNS
        } else {
            &ACC_COLUMNS
        }
    }

    /// The worker that made it ([`NO_ORIGIN`]: none).
    pub fn origin(&self) -> u16 {
        self.origin
    }

    /// Marks it as made by worker `origin`, to be handed back to it once written.
    pub fn set_origin(&mut self, origin: u16) {
        self.origin = origin;
    }

    /// Whether its buffers are small enough to be worth keeping for another record.
    pub fn reusable(&self) -> bool {
        self.origin != NO_ORIGIN
            && self.text.capacity() <= REUSE_TEXT
            && self.slots.capacity() <= REUSE_SLOTS
    }

    /// The field named `column`.
    pub fn get(&self, column: &str) -> Option<Field<'_>> {
        let i = self.columns().iter().position(|c| *c == column)?;
        self.slots.get(i).map(|s| self.read(*s))
    }
}

/// Builds a record field by field, text written in place into the record's string.
pub struct Builder {
    r: Record,
}

impl Builder {
    /// A record for `table` of `columns` fields, with room for `text` bytes of text.
    pub fn new(table: &str, columns: usize, text: usize) -> Builder {
        Builder::reusing(None, table, columns, text)
    }

    /// The same, in the buffers of `spare` (a record written and handed back) when there is
    /// one: a worker's records then cost no allocation, and none is freed on another thread.
    pub fn reusing(spare: Option<Record>, table: &str, columns: usize, text: usize) -> Builder {
        let mut r = match spare {
            Some(mut r) => {
                r.text.clear();
                r.slots.clear();
                r
            }
            None => Record {
                text: String::new(),
                table_len: 0,
                origin: NO_ORIGIN,
                slots: Vec::new(),
            },
        };
        r.text.reserve(table.len() + text);
        r.slots.reserve(columns);
        r.text.push_str(table);
        r.table_len = table.len() as u32;
        Builder { r }
    }

    /// The next field, whatever its kind.
    pub fn field(&mut self, f: Field<'_>) {
        match f {
            Field::Empty => self.r.slots.push(Slot::Empty),
            Field::Text(s) => self.text(s),
            Field::Int(n) => self.r.slots.push(Slot::Int(n)),
            Field::Seconds(ms) => self.r.slots.push(Slot::Seconds(ms)),
            Field::Time(ms) => self.r.slots.push(Slot::Time(ms)),
            Field::Json(s) => self.json_with(|out| out.push_str(s)),
        }
    }

    /// A text field (none when empty).
    pub fn text(&mut self, s: &str) {
        self.text_with(|out| out.push_str(s));
    }

    /// A text field written by `write` (none when it writes nothing).
    fn text_with(&mut self, write: impl FnOnce(&mut String)) {
        let (a, b) = self.write(write);
        self.r.slots.push(if a == b {
            Slot::Empty
        } else {
            Slot::Text(a, b)
        });
    }

    /// A JSON field written by `write`.
    fn json_with(&mut self, write: impl FnOnce(&mut String)) {
        let (a, b) = self.write(write);
        self.r.slots.push(Slot::Json(a, b));
    }

    fn write(&mut self, write: impl FnOnce(&mut String)) -> (u32, u32) {
        let a = self.r.text.len() as u32;
        write(&mut self.r.text);
        (a, self.r.text.len() as u32)
    }

    pub fn int(&mut self, n: Option<u64>) {
        self.r.slots.push(n.map_or(Slot::Empty, Slot::Int));
    }

    pub fn seconds(&mut self, ms: Option<u64>) {
        self.r.slots.push(ms.map_or(Slot::Empty, Slot::Seconds));
    }

    /// A time; 0 is none.
    pub fn time(&mut self, ms: u64) {
        self.field(Field::time(ms));
    }

    pub fn finish(self) -> Record {
        self.r
    }
}

/// Record ids: `<node>-<process start, unix ms>-<sequence>`, unique across restarts. Each
/// worker has its own sequence, interleaved with the others' (worker `k` of `n` takes
/// `k, k + n, k + 2n …`), so no two workers ever give the same id.
#[derive(Debug, Clone)]
pub struct Ids {
    node: String,
    /// `<node>-<process start>-`, written once.
    prefix: String,
    next: u64,
    step: u64,
}

impl Ids {
    pub fn new(node: &str, start_ms: u64, worker: u32, workers: u32) -> Ids {
        let mut prefix = format!("{node}-");
        write_int(start_ms, &mut prefix);
        prefix.push('-');
        Ids {
            node: node.into(),
            prefix,
            next: u64::from(worker),
            step: u64::from(workers.max(1)),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The next id.
    pub fn next_id(&mut self) -> String {
        let mut id = String::with_capacity(self.node.len() + 28);
        self.write_next_id(&mut id);
        id
    }

    /// Writes the next id.
    pub fn write_next_id(&mut self, out: &mut String) {
        out.push_str(&self.prefix);
        write_int(self.next, out);
        self.next += self.step;
    }
}

/// A target's address (`ip:port`), written in place.
fn write_target(t: Option<Target>, out: &mut String) {
    if let Some(t) = t {
        match t.addr {
            std::net::SocketAddr::V4(a) => write_v4(*a.ip(), Some(a.port()), out),
            a => {
                let _ = write!(out, "{a}");
            }
        }
    }
}

/// An address as `Display` writes it.
fn write_ip(ip: std::net::IpAddr, out: &mut String) {
    match ip {
        std::net::IpAddr::V4(v4) => write_v4(v4, None, out),
        v6 => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// An IPv4 address (and a port) as `Display` writes it, built on the stack and appended in
/// one piece: formatting machinery, or a digit loop and an append per octet, cost more
/// than the digits (each record has two addresses).
fn write_v4(ip: std::net::Ipv4Addr, port: Option<u16>, out: &mut String) {
    let mut buf = [0u8; 21]; // 255.255.255.255:65535
    let mut n = 0;
    let mut put = |b: u8| {
        buf[n] = b;
        n += 1;
    };
    for (i, o) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            put(b'.');
        }
        if o >= 100 {
            put(b'0' + o / 100);
        }
        if o >= 10 {
            put(b'0' + o / 10 % 10);
        }
        put(b'0' + o % 10);
    }
    if let Some(p) = port {
        put(b':');
        let mut digits = [0u8; 20];
        let k = decimal(&mut digits, p.into());
        digits[k..].iter().for_each(|&d| put(d));
    }
    out.push_str(ascii(&buf[..n]));
}

/// Splits a rule's comment the way Kamailio's `acc_log_request` does: three digits and a
/// space start a code (`"210 Bye received"` → 210, `Bye received`); otherwise it is all reason.
pub fn split_comment(comment: &str) -> (Option<u16>, &str) {
    let b = comment.as_bytes();
    if b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b' ' {
        (comment[..3].parse().ok(), &comment[4..])
    } else {
        (None, comment)
    }
}

/// A transaction record in `table` from the outcome of a transaction; `comment` (a rule's)
/// replaces its code and reason, and `time_ms` its time (a rule's record is timestamped on
/// receipt).
pub fn acc_record(
    ids: &mut Ids,
    spare: Option<Record>,
    table: &str,
    t: &TxnOutcome,
    comment: Option<&str>,
    time_ms: u64,
) -> Record {
    let (code, reason) = match comment {
        Some(c) => split_comment(c),
        None => (t.code, &*t.reason),
    };
    let p = &t.parties;
    let mut b = Builder::reusing(spare, table, ACC_COLUMNS.len(), 320);
    b.text(ids.node());
    b.text_with(|out| ids.write_next_id(out));
    b.text(t.method.as_str());
    b.text(p.from_tag());
    b.text(&t.to_tag);
    b.text(p.call_id());
    b.int(code.map(u64::from));
    b.text(reason);
    b.time(time_ms);
    caller_and_callee(&mut b, p, t.source.addr.ip(), &t.account, t.gateway);
    b.finish()
}

/// The columns both tables share, in their order: `src_user, src_domain, src_ip, dst_ouser,
/// dst_user, dst_domain, account, gateway`.
fn caller_and_callee(
    b: &mut Builder,
    p: &Parties,
    src_ip: std::net::IpAddr,
    account: &str,
    gateway: Option<Target>,
) {
    b.text(p.from_user());
    b.text(p.from_domain());
    b.text_with(|out| write_ip(src_ip, out));
    b.text(p.to_user());
    b.text(p.ruri_user());
    b.text(p.ruri_host());
    b.text(account);
    b.text_with(|out| write_target(gateway, out));
}

/// What became of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Answered,
    Busy,
    Cancelled,
    NoAnswer,
    RejectedLimit,
    Failed,
}

impl Disposition {
    pub fn of(d: &DialogRecord) -> Disposition {
        if d.limit_refused {
            return Disposition::RejectedLimit;
        }
        if d.answered {
            return Disposition::Answered;
        }
        match d.outcome.code {
            Some(486 | 600) => Disposition::Busy,
            // Cancelled only by the caller's CANCEL; siplb's own for a call that rang too
            // long is no answer, and a 487 for any other reason (the gateway's own, an
            // operator's or a stopping siplb's CANCEL) a failure.
            Some(487) => match d.cancelled_by {
                Some(EndedBy::Caller) => Disposition::Cancelled,
                Some(EndedBy::Timeout) => Disposition::NoAnswer,
                _ => Disposition::Failed,
            },
            None | Some(408 | 480) => Disposition::NoAnswer,
            Some(c) if c < 300 => Disposition::Answered,
            Some(_) => Disposition::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::Busy => "busy",
            Disposition::Cancelled => "cancelled",
            Disposition::NoAnswer => "no_answer",
            Disposition::RejectedLimit => "rejected_limit",
            Disposition::Failed => "failed",
        }
    }
}

/// The CDR of a call.
pub fn cdr(ids: &mut Ids, spare: Option<Record>, d: &DialogRecord) -> Record {
    let p = &d.parties;
    let t = &d.times;
    // Post-dial delay: INVITE received to the first 180/183, or to the final reply (the
    // answer, or the end of a call that failed) when there was none; none for a call that
    // got no reply at all (still ringing, unanswered, as siplb stopped), nor for one
    // cancelled (by the caller, an operator, the early timeout, the stop) before it rang:
    // its 487 only measures how long the caller waited.
    let cancelled = d.cancelled_by.is_some() && d.outcome.code == Some(487);
    let final_reply = if d.outcome.code.is_some() && !cancelled {
        t.end
    } else {
        0
    };
    let pdd_to = [t.ringing, t.answer, final_reply]
        .into_iter()
        .find(|&x| x != 0);
    let pdd = pdd_to.map(|x| x.saturating_sub(t.invite_received));
    let duration = (t.end != 0).then(|| t.end.saturating_sub(t.invite_received));
    let billsec = if d.answered && t.end != 0 {
        t.end.saturating_sub(t.answer)
    } else {
        0
    };
    let mut b = Builder::reusing(spare, "cdrs", CDR_COLUMNS.len(), 640);
    b.text(ids.node());
    b.text_with(|out| ids.write_next_id(out));
    b.text(p.call_id());
    b.text(p.from_tag());
    b.text(&d.to_tag);
    caller_and_callee(&mut b, p, d.caller.addr.ip(), &d.account, d.gateway);
    b.text(if d.inbound { "inbound" } else { "outbound" });
    b.int(Some(d.attempts.into()));
    b.time(t.invite_received);
    b.time(t.invite_forwarded);
    b.time(t.first_reply);
    b.time(t.ringing);
    b.time(t.answer);
    b.time(t.end);
    b.seconds(duration);
    b.seconds(Some(billsec));
    b.int(pdd);
    b.int(d.outcome.code.map(u64::from));
    b.text(&d.outcome.reason);
    b.int(d.outcome.q850_cause.map(u64::from));
    b.text(Disposition::of(d).as_str());
    b.text(d.ended_by.map_or("", |e| e.as_str()));
    b.json_with(|out| write_vars(&d.vars, out));
    b.finish()
}

/// The dialog's variables as one JSON object, in the order they were first set; a name set
/// twice keeps its last value.
fn write_vars(vars: &[(Box<str>, Box<str>)], out: &mut String) {
    out.push('{');
    let mut first = true;
    for (i, (k, _)) in vars.iter().enumerate() {
        if vars[..i].iter().any(|(seen, _)| seen == k) {
            continue;
        }
        let v = vars
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v);
        if !first {
            out.push(',');
        }
        first = false;
        json_text(k, out);
        out.push(':');
        json_text(v, out);
    }
    out.push('}');
}

#[cfg(test)]
mod tests;
