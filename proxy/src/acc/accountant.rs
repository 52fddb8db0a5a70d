//! A worker's accounting buffer: it turns the shard's events into records as `[acc]` asks
//! (Kamailio's flags per method, the rules, the CDR of each call) and pushes them into the
//! worker's own queue. It never blocks and never writes a file: a record that does not fit
//! waits here, in order, and while anything waits (or the queue is nearly full, or the writer
//! is stalled) the worker refuses new INVITEs, so that no record of a call let in is lost.

use super::config::AccConfig;
use super::plane::AccPlane;
use super::record::{Ids, Record, acc_record, cdr};
use crate::metrics::ShardStats;
use crate::proxy::event::{Event, TxnOutcome};
use crate::sip::Method;
use std::collections::VecDeque;
use std::sync::Arc;

/// The table of transactions recorded by flag, and of missed calls.
pub const ACC_TABLE: &str = "acc";
pub const MISSED_TABLE: &str = "missed_calls";

pub struct Accountant {
    cfg: Arc<AccConfig>,
    plane: Arc<AccPlane>,
    worker: usize,
    ids: Ids,
    /// Records that did not fit in the queue, oldest first.
    waiting: VecDeque<Record>,
    /// Queue length from which new calls are refused.
    high_water: usize,
    /// The worker's statistics (`acc:records`).
    stats: Arc<ShardStats>,
}

impl Accountant {
    /// The accountant of worker `worker` of `workers`; ids start with the process start
    /// `start_ms`.
    pub fn new(
        cfg: Arc<AccConfig>,
        plane: Arc<AccPlane>,
        worker: u32,
        workers: u32,
        start_ms: u64,
        stats: Arc<ShardStats>,
    ) -> Accountant {
        let capacity = plane.queues[worker as usize].capacity();
        Accountant {
            ids: Ids::new(&cfg.node, start_ms, worker, workers),
            cfg,
            plane,
            worker: worker as usize,
            waiting: VecDeque::new(),
            // A quarter of the queue stays free for the calls already let in.
            high_water: capacity - capacity / 4,
            stats,
        }
    }

    /// The records of one event.
    pub fn on_event(&mut self, e: &Event) {
        match e {
            Event::Transaction(t) => self.on_transaction(t),
            Event::Request(r) => self.on_request(r),
            Event::Dialog(d) if self.cfg.cdrs => {
                let r = cdr(&mut self.ids, self.plane.spare(self.worker), d);
                self.push(r);
            }
            Event::Dialog(_) | Event::Refused(_) | Event::Gateway(_) => {}
        }
    }

    fn on_transaction(&mut self, t: &TxnOutcome) {
        // The INVITE flags are for calls: Kamailio's default configuration sets them only on
        // requests outside a dialog, so a re-INVITE (answered, or refused with 491 or 488)
        // is neither an `acc` record nor a missed call.
        if t.method == Method::Invite && t.in_dialog {
            return;
        }
        let c = &self.cfg;
        let ok = t.code.is_some_and(|c| (200..300).contains(&c));
        let flagged = c.flags.contains(t.method) && (ok || c.failed_flags.contains(t.method));
        let missed = !ok && t.method == Method::Invite && c.missed_flags.contains(t.method);
        if flagged {
            let r = self.transaction_record(ACC_TABLE, t);
            self.push(r);
        }
        if missed {
            let r = self.transaction_record(MISSED_TABLE, t);
            self.push(r);
        }
    }

    /// A transaction's record; one without a final answer has the code of its local timeout.
    fn transaction_record(&mut self, table: &str, t: &TxnOutcome) -> Record {
        let spare = self.plane.spare(self.worker);
        if t.code.is_none() {
            let mut timed_out = t.clone();
            timed_out.code = Some(408);
            timed_out.reason = "Request Timeout".into();
            timed_out.local = true;
            return acc_record(&mut self.ids, spare, table, &timed_out, None, t.at_ms);
        }
        acc_record(&mut self.ids, spare, table, t, None, t.at_ms)
    }

    fn on_request(&mut self, r: &TxnOutcome) {
        for i in 0..self.cfg.rules.len() {
            let rule = &self.cfg.rules[i];
            if rule.matches(r.method, &r.account, r.parties.ruri_user()) {
                let spare = self.plane.spare(self.worker);
                let rec = acc_record(
                    &mut self.ids,
                    spare,
                    &rule.table,
                    r,
                    Some(&rule.comment),
                    r.at_ms,
                );
                self.push(rec);
            }
        }
    }

    fn push(&mut self, mut r: Record) {
        r.set_origin(self.worker as u16);
        self.stats.acc_records.inc();
        if !self.waiting.is_empty() {
            self.waiting.push_back(r);
            return;
        }
        if let Err(r) = self.plane.queues[self.worker].push(r) {
            self.waiting.push_back(r);
        }
    }

    /// Moves waiting records into the queue, as far as they fit.
    pub fn flush(&mut self) {
        let q = &self.plane.queues[self.worker];
        while let Some(r) = self.waiting.pop_front() {
            if let Err(r) = q.push(r) {
                self.waiting.push_front(r);
                break;
            }
        }
    }

    /// Whether new calls must be refused: records wait here, the queue is nearly full, or
    /// the writer cannot write.
    pub fn full(&self) -> bool {
        !self.waiting.is_empty()
            || self.plane.queues[self.worker].len() >= self.high_water
            || self.plane.is_stalled()
    }

    /// Whether as many records wait here as the queue holds before new INVITEs are refused:
    /// requests in a dialog that would add more are refused too, so that what waits here
    /// stays bounded however long the writer is stalled.
    pub fn overflowing(&self) -> bool {
        self.waiting.len() >= self.high_water
    }

    /// Records waiting here (not yet in the queue).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

impl Drop for Accountant {
    /// A stopping worker leaves what did not fit to the writer.
    fn drop(&mut self) {
        self.flush();
        if !self.waiting.is_empty() {
            self.plane.leave(self.waiting.drain(..));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acc::config::AccRule;
    use crate::proxy::event::Parties;
    use crate::proxy::target::Target;

    fn cfg(f: impl FnOnce(&mut AccConfig)) -> Arc<AccConfig> {
        let mut c = AccConfig::for_tests("/nonexistent", 4);
        c.formats.jsonl = false;
        f(&mut c);
        Arc::new(c)
    }

    fn outcome(method: Method, code: Option<u16>) -> Event {
        Event::Transaction(Box::new(TxnOutcome {
            dialog: None,
            method,
            parties: Parties::new("", "", "", "", "", "0044", ""),
            to_tag: "t".into(),
            in_dialog: method == Method::Bye,
            source: Target::udp("127.0.0.1:5070".parse().unwrap()),
            destination: None,
            account: "acct".into(),
            gateway: None,
            code,
            reason: "R".into(),
            q850_cause: None,
            local: false,
            at_ms: 1,
        }))
    }

    fn accountant(c: Arc<AccConfig>) -> (Accountant, Arc<AccPlane>) {
        let plane = Arc::new(AccPlane::new(1, c.queue));
        let a = Accountant::new(c, plane.clone(), 0, 1, 1000, Arc::default());
        (a, plane)
    }

    fn drained(plane: &AccPlane) -> Vec<(String, String)> {
        std::iter::from_fn(|| plane.queues[0].pop())
            .map(|r| (r.table().to_string(), r.get("sip_code").unwrap().as_text()))
            .collect()
    }

    #[test]
    fn a_record_handed_back_is_built_again_in_its_own_buffers_and_others_are_not_kept() {
        let c = cfg(|c| c.flags.insert(Method::Invite));
        let (mut a, plane) = accountant(c);
        a.on_event(&outcome(Method::Invite, Some(200)));
        let first = plane.queues[0].pop().unwrap();
        assert_eq!(first.origin(), 0, "made by worker 0");
        let buffer = first.table().as_ptr();
        plane.recycle(first);
        a.on_event(&outcome(Method::Invite, Some(200)));
        let second = plane.queues[0].pop().unwrap();
        assert_eq!(
            second.table().as_ptr(),
            buffer,
            "built in the record handed back"
        );
        assert_eq!(second.get("sip_code").unwrap().as_text(), "200");
        assert!(plane.spare(0).is_none());
        // Records no worker made (replays, tests) and records grown large are freed.
        plane.recycle(Record::new("acc", &[]));
        assert!(plane.spare(0).is_none());
        let mut big = Record::new(
            "acc",
            &[super::super::record::Field::Text(&"x".repeat(8192))],
        );
        big.set_origin(0);
        plane.recycle(big);
        assert!(plane.spare(0).is_none());
    }

    #[test]
    fn flags_record_2xx_and_failed_flags_the_rest_missed_calls_go_apart_and_re_invites_are_not_calls()
     {
        let c = cfg(|c| {
            c.flags.insert(Method::Invite);
            c.flags.insert(Method::Bye);
            c.failed_flags.insert(Method::Bye);
            c.missed_flags.insert(Method::Invite);
        });
        let (mut a, plane) = accountant(c);
        a.on_event(&outcome(Method::Invite, Some(200)));
        a.on_event(&outcome(Method::Invite, Some(486)));
        a.on_event(&outcome(Method::Bye, None));
        // Re-INVITEs, answered or refused, are not calls.
        for code in [200, 491] {
            let Event::Transaction(mut t) = outcome(Method::Invite, Some(code)) else {
                unreachable!()
            };
            t.in_dialog = true;
            a.on_event(&Event::Transaction(t));
        }
        assert_eq!(
            drained(&plane),
            [
                ("acc".into(), "200".into()),
                ("missed_calls".into(), "486".into()),
                ("acc".into(), "408".into()),
            ]
        );
    }

    #[test]
    fn without_the_failed_flag_a_failure_is_not_recorded() {
        let c = cfg(|c| c.flags.insert(Method::Bye));
        let (mut a, plane) = accountant(c);
        a.on_event(&outcome(Method::Bye, Some(481)));
        a.on_event(&outcome(Method::Bye, None));
        assert!(drained(&plane).is_empty());
    }

    #[test]
    fn a_rule_records_the_request_with_its_comment_when_it_matches() {
        let c = cfg(|c| {
            c.rules.push(AccRule {
                method: Method::Bye,
                comment: "210 Bye received".into(),
                table: "acc".into(),
                account: Some("acct".into()),
                prefix: Some("00".into()),
            });
            c.rules.push(AccRule {
                method: Method::Bye,
                comment: "other".into(),
                table: "elsewhere".into(),
                account: Some("nobody".into()),
                prefix: None,
            });
        });
        let (mut a, plane) = accountant(c);
        let Event::Transaction(t) = outcome(Method::Bye, None) else {
            unreachable!()
        };
        a.on_event(&Event::Request(t));
        assert_eq!(drained(&plane), [("acc".into(), "210".into())]);
    }

    #[test]
    fn records_that_do_not_fit_wait_in_order_and_refuse_new_calls_meanwhile() {
        let c = cfg(|c| c.flags.insert(Method::Invite));
        let (mut a, plane) = accountant(c);
        assert!(!a.full());
        for _ in 0..6 {
            a.on_event(&outcome(Method::Invite, Some(200)));
        }
        assert_eq!(a.waiting(), 2);
        assert!(a.full());
        let first = plane.queues[0].pop().unwrap();
        a.flush();
        assert_eq!(a.waiting(), 1);
        assert!(a.full());
        drop(a);
        // What did not fit is left to the writer, not lost.
        let ids: Vec<String> = std::iter::once(first)
            .chain(std::iter::from_fn(|| plane.queues[0].pop()))
            .chain(plane.take_leftovers())
            .map(|r| r.get("id").unwrap().as_text())
            .collect();
        assert_eq!(ids.len(), 6);
        assert_eq!(ids[0], "n-1000-0");
        assert_eq!(ids[5], "n-1000-5");
    }

    #[test]
    fn records_waiting_past_the_queues_high_water_are_an_overflow() {
        let c = cfg(|c| c.flags.insert(Method::Invite));
        let (mut a, plane) = accountant(c);
        // The queue takes 4; 3 waiting on top of it is the high water of a queue of 4.
        for n in 1..=7 {
            a.on_event(&outcome(Method::Invite, Some(200)));
            assert_eq!(a.overflowing(), n >= 7, "{n} records");
        }
        while plane.queues[0].pop().is_some() {}
        a.flush();
        assert!(!a.overflowing());
    }
}
