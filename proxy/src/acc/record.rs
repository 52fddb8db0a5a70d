//! The records: a transaction record (tables `acc`, `missed_calls`, or one a rule names) and
//! the CDR of a call (table `cdrs`), each a row of typed fields in the fixed column order.

use super::time::{rfc3339_ms, seconds_ms};
use crate::proxy::event::{DialogRecord, TxnOutcome};
use crate::proxy::target::Target;

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

/// One field of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// No value (an empty CSV field, JSON `null`).
    Empty,
    Text(String),
    Int(u64),
    /// Seconds with milliseconds, kept as milliseconds.
    Seconds(u64),
    /// An RFC 3339 UTC time, kept as Unix ms.
    Time(u64),
    /// A JSON object (the dialog variables), as JSON text.
    Json(String),
}

impl Field {
    fn text(s: &str) -> Field {
        if s.is_empty() {
            Field::Empty
        } else {
            Field::Text(s.into())
        }
    }

    fn time(ms: u64) -> Field {
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
            Field::Text(s) | Field::Json(s) => s.clone(),
            Field::Int(n) => n.to_string(),
            Field::Seconds(ms) => seconds_ms(*ms),
            Field::Time(ms) => rfc3339_ms(*ms),
        }
    }
}

/// A record for table `table`: its fields in the order of [`ACC_COLUMNS`] or
/// [`CDR_COLUMNS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub table: String,
    pub fields: Vec<Field>,
}

impl Record {
    /// The column names of this record's fields.
    pub fn columns(&self) -> &'static [&'static str] {
        if self.fields.len() == CDR_COLUMNS.len() {
            &CDR_COLUMNS
        } else {
            &ACC_COLUMNS
        }
    }

    /// The field named `column`.
    pub fn get(&self, column: &str) -> Option<&Field> {
        let i = self.columns().iter().position(|c| *c == column)?;
        self.fields.get(i)
    }
}

/// Record ids: `<node>-<process start, unix ms>-<sequence>`, unique across restarts. Each
/// worker has its own sequence, interleaved with the others' (worker `k` of `n` takes
/// `k, k + n, k + 2n …`), so no two workers ever give the same id.
#[derive(Debug, Clone)]
pub struct Ids {
    node: String,
    start_ms: u64,
    next: u64,
    step: u64,
}

impl Ids {
    pub fn new(node: &str, start_ms: u64, worker: u32, workers: u32) -> Ids {
        Ids {
            node: node.into(),
            start_ms,
            next: u64::from(worker),
            step: u64::from(workers.max(1)),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The next id.
    pub fn next_id(&mut self) -> String {
        let id = format!("{}-{}-{}", self.node, self.start_ms, self.next);
        self.next += self.step;
        id
    }
}

fn target(t: Option<Target>) -> Field {
    t.map_or(Field::Empty, |t| Field::Text(t.addr.to_string()))
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
    table: &str,
    t: &TxnOutcome,
    comment: Option<&str>,
    time_ms: u64,
) -> Record {
    let (code, reason) = match comment {
        Some(c) => {
            let (code, reason) = split_comment(c);
            (code, reason.to_string())
        }
        None => (t.code, t.reason.to_string()),
    };
    let p = &t.parties;
    let fields = vec![
        Field::Text(ids.node().into()),
        Field::Text(ids.next_id()),
        Field::Text(t.method.as_str().into()),
        Field::text(&p.from_tag),
        Field::text(&t.to_tag),
        Field::text(&p.call_id),
        code.map_or(Field::Empty, |c| Field::Int(c.into())),
        Field::text(&reason),
        Field::Time(time_ms),
        Field::text(&p.from_user),
        Field::text(&p.from_domain),
        Field::Text(t.source.addr.ip().to_string()),
        Field::text(&p.to_user),
        Field::text(&p.ruri_user),
        Field::text(&p.ruri_host),
        Field::text(&t.account),
        target(t.gateway),
    ];
    Record {
        table: table.into(),
        fields,
    }
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
            Some(487) => Disposition::Cancelled,
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
pub fn cdr(ids: &mut Ids, d: &DialogRecord) -> Record {
    let p = &d.parties;
    let t = &d.times;
    // Post-dial delay: INVITE received to the first 180/183, or to the final reply (the
    // answer, or the end of a call that failed) when there was none.
    let pdd_to = [t.ringing, t.answer, t.end].into_iter().find(|&x| x != 0);
    let pdd = pdd_to.map(|x| x.saturating_sub(t.invite_received));
    let duration = (t.end != 0).then(|| t.end.saturating_sub(t.invite_received));
    let billsec = if d.answered && t.end != 0 {
        t.end.saturating_sub(t.answer)
    } else {
        0
    };
    let vars: serde_json::Map<String, serde_json::Value> = d
        .vars
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(v.to_string())))
        .collect();
    let fields = vec![
        Field::Empty, // node, set below with the id
        Field::Empty,
        Field::text(&p.call_id),
        Field::text(&p.from_tag),
        Field::text(&d.to_tag),
        Field::text(&p.from_user),
        Field::text(&p.from_domain),
        Field::Text(d.caller.addr.ip().to_string()),
        Field::text(&p.to_user),
        Field::text(&p.ruri_user),
        Field::text(&p.ruri_host),
        Field::text(&d.account),
        target(d.gateway),
        Field::Text(if d.inbound { "inbound" } else { "outbound" }.into()),
        Field::Int(d.attempts.into()),
        Field::time(t.invite_received),
        Field::time(t.invite_forwarded),
        Field::time(t.first_reply),
        Field::time(t.ringing),
        Field::time(t.answer),
        Field::time(t.end),
        duration.map_or(Field::Empty, Field::Seconds),
        Field::Seconds(billsec),
        pdd.map_or(Field::Empty, Field::Int),
        d.outcome
            .code
            .map_or(Field::Empty, |c| Field::Int(c.into())),
        Field::text(&d.outcome.reason),
        d.outcome
            .q850_cause
            .map_or(Field::Empty, |c| Field::Int(c.into())),
        Field::Text(Disposition::of(d).as_str().into()),
        d.ended_by
            .map_or(Field::Empty, |e| Field::Text(e.as_str().into())),
        Field::Json(serde_json::Value::Object(vars).to_string()),
    ];
    let mut r = Record {
        table: "cdrs".into(),
        fields,
    };
    r.fields[0] = Field::Text(ids.node().into());
    r.fields[1] = Field::Text(ids.next_id());
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::dialogs::{DialogTimes, Outcome};
    use crate::proxy::event::{EndedBy, Parties};
    use crate::sip::Method;

    fn parties() -> Parties {
        Parties {
            call_id: "c1".into(),
            from_tag: "f1".into(),
            from_user: "alice".into(),
            from_domain: "cust.example".into(),
            to_user: "bob".into(),
            ruri_user: "0044123".into(),
            ruri_host: "gw.example".into(),
        }
    }

    fn gw() -> Target {
        Target::udp("198.18.2.30:5060".parse().unwrap())
    }

    fn dialog(answered: bool, code: Option<u16>) -> DialogRecord {
        let t0 = 1_796_125_784_000;
        DialogRecord {
            id: None,
            parties: parties(),
            to_tag: if answered { "gw".into() } else { "".into() },
            from: "<sip:alice@cust.example>;tag=f1".into(),
            to: "<sip:bob@dest>".into(),
            caller: Target::udp("198.18.1.20:5070".parse().unwrap()),
            gateway: Some(gw()),
            account: "alice".into(),
            times: DialogTimes {
                invite_received: t0,
                invite_forwarded: t0 + 1,
                first_reply: t0 + 20,
                ringing: if answered { t0 + 1_500 } else { 0 },
                answer: if answered { t0 + 4_000 } else { 0 },
                end: t0 + 65_237,
            },
            attempts: 1,
            outcome: Outcome {
                code,
                reason: "whatever".into(),
                q850_cause: Some(16),
            },
            limit_refused: false,
            inbound: false,
            operator_cancelled: false,
            answered,
            ended_by: answered.then_some(EndedBy::Caller),
            vars: vec![("BillSec".into(), "61".into())],
        }
    }

    #[test]
    fn every_column_is_documented() {
        let doc = include_str!("../../../docs/CDR.md");
        for c in ACC_COLUMNS.iter().chain(&CDR_COLUMNS) {
            assert!(
                doc.contains(&format!("| `{c}` |")),
                "{c} missing from docs/CDR.md"
            );
        }
    }

    #[test]
    fn ids_are_unique_across_workers_and_name_node_and_start() {
        let mut a = Ids::new("n1", 1000, 0, 2);
        let mut b = Ids::new("n1", 1000, 1, 2);
        let ids: Vec<String> = (0..3).flat_map(|_| [a.next_id(), b.next_id()]).collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 6, "{ids:?}");
        assert_eq!(ids[0], "n1-1000-0");
        assert_eq!(ids[1], "n1-1000-1");
    }

    #[test]
    fn a_comment_with_three_digits_and_a_space_is_a_code_and_a_reason() {
        assert_eq!(
            split_comment("210 Bye received"),
            (Some(210), "Bye received")
        );
        assert_eq!(split_comment("Bye received"), (None, "Bye received"));
        assert_eq!(split_comment("21 x"), (None, "21 x"));
    }

    #[test]
    fn an_answered_call_has_its_times_billsec_pdd_and_vars() {
        let mut ids = Ids::new("n1", 7, 0, 1);
        let r = cdr(&mut ids, &dialog(true, Some(200)));
        assert_eq!(r.fields.len(), CDR_COLUMNS.len());
        let get = |c| r.get(c).unwrap().as_text();
        assert_eq!(get("disposition"), "answered");
        assert_eq!(get("billsec"), "61.237");
        assert_eq!(get("duration"), "65.237");
        assert_eq!(get("pdd_ms"), "1500");
        assert_eq!(get("invite_time"), "2026-12-01T11:49:44.000Z");
        assert_eq!(get("ended_by"), "caller");
        assert_eq!(get("gateway"), "198.18.2.30:5060");
        assert_eq!(get("src_ip"), "198.18.1.20");
        assert_eq!(get("vars"), "{\"BillSec\":\"61\"}");
        assert_eq!(get("id"), "n1-7-0");
    }

    #[test]
    fn dispositions_follow_the_final_reply() {
        let mut ids = Ids::new("n", 0, 0, 1);
        for (code, want) in [
            (Some(486), "busy"),
            (Some(600), "busy"),
            (Some(487), "cancelled"),
            (Some(408), "no_answer"),
            (Some(480), "no_answer"),
            (None, "no_answer"),
            (Some(503), "failed"),
        ] {
            let r = cdr(&mut ids, &dialog(false, code));
            assert_eq!(r.get("disposition").unwrap().as_text(), want, "{code:?}");
            assert_eq!(r.get("billsec").unwrap().as_text(), "0.000");
            assert_eq!(r.get("ended_by").unwrap(), &Field::Empty);
        }
        let mut refused = dialog(false, Some(503));
        refused.limit_refused = true;
        let r = cdr(&mut ids, &refused);
        assert_eq!(r.get("disposition").unwrap().as_text(), "rejected_limit");
    }

    #[test]
    fn pdd_without_ringing_runs_to_the_final_reply() {
        let mut ids = Ids::new("n", 0, 0, 1);
        let r = cdr(&mut ids, &dialog(false, Some(486)));
        assert_eq!(r.get("pdd_ms").unwrap().as_text(), "65237");
    }

    #[test]
    fn a_rules_record_takes_the_comments_code_and_reason() {
        let t = TxnOutcome {
            dialog: None,
            method: Method::Bye,
            parties: parties(),
            to_tag: "gw".into(),
            source: Target::udp("198.18.1.20:5070".parse().unwrap()),
            destination: Some(gw()),
            account: "alice".into(),
            gateway: Some(gw()),
            code: Some(200),
            reason: "OK".into(),
            q850_cause: None,
            local: false,
            at_ms: 5,
        };
        let mut ids = Ids::new("n", 0, 0, 1);
        let r = acc_record(&mut ids, "acc", &t, Some("210 Bye received"), 1_000);
        assert_eq!(r.fields.len(), ACC_COLUMNS.len());
        let get = |c| r.get(c).unwrap().as_text();
        assert_eq!(
            (get("method"), get("sip_code")),
            ("BYE".into(), "210".into())
        );
        assert_eq!(get("sip_reason"), "Bye received");
        assert_eq!(get("time"), "1970-01-01T00:00:01.000Z");
        assert_eq!(get("dst_user"), "0044123");
        let plain = acc_record(&mut ids, "acc", &t, None, t.at_ms);
        assert_eq!(plain.get("sip_code").unwrap().as_text(), "200");
    }
}
