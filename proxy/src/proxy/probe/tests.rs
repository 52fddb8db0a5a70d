//! The prober on a virtual clock: what it sends, to whom, with which Call-ID, and how replies
//! and silence move the gateways' state.

use super::*;
use crate::proxy::gateway::GatewaySet;

const MS: Duration = Duration::from_millis(1);

fn gw(n: u16) -> SocketAddr {
    format!("127.0.0.1:{}", 5080 + n).parse().unwrap()
}

fn local() -> SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}

/// Two gateways probed every 200 ms, 100 ms timeout, down after 2, up after 1.
fn gateways() -> Gateways {
    let mut set: GatewaySet = vec![gw(1), gw(2)].into();
    let mut p = ProbeConfig::every(200 * MS);
    p.timeout = 100 * MS;
    set.probe = Some(p);
    for g in &set.gateways {
        g.state.health.set_probing(true);
    }
    Gateways {
        sets: vec![set],
        routes: Vec::new(),
    }
}

fn sent(out: &mut Output) -> Vec<(SocketAddr, Vec<u8>)> {
    std::iter::from_fn(|| out.poll_transmit())
        .map(|t| (t.dst.addr, t.data))
        .collect()
}

/// The reply `code` to a probe, as the gateway writes it.
fn reply(probe: &[u8], code: u16) -> Vec<u8> {
    let m = SipMsg::parse(probe).unwrap();
    let text = String::from_utf8_lossy(probe);
    let via = text.lines().find(|l| l.starts_with("Via:")).unwrap();
    format!(
        "SIP/2.0 {code} X\r\n{via}\r\nFrom: <sip:a@b>;tag=x\r\nTo: <sip:c@d>;tag=y\r\n\
         Call-ID: {}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8_lossy(m.call_id())
    )
    .into_bytes()
}

/// Answers `probe`; the events it caused (a gateway up).
fn answer(
    p: &mut Prober,
    now: Instant,
    from: SocketAddr,
    probe: &[u8],
    code: u16,
    g: &Gateways,
) -> Vec<crate::proxy::Event> {
    let data = reply(probe, code);
    let m = SipMsg::parse(&data).unwrap();
    let mut out = Output::default();
    assert!(p.on_response(now, from, &m, g, &mut out));
    std::iter::from_fn(|| out.poll_event()).collect()
}

fn up(g: &Gateways, i: usize) -> bool {
    g.sets[0].gateways[i].state.health.usable()
}

#[test]
fn every_gateway_gets_an_options_whose_call_id_its_worker_owns() {
    let g = gateways();
    for worker in 0..3 {
        let mut p = Prober::new(worker, 3, 777, local(), "t0k".into());
        let mut out = Output::default();
        let t0 = Instant::now();
        p.tick(t0, &g, &mut out);
        let s = sent(&mut out);
        assert_eq!(
            s.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            [gw(1), gw(2)]
        );
        for (to, data) in &s {
            let m = SipMsg::parse(data).unwrap();
            assert_eq!(m.method(), Some(crate::sip::Method::Options));
            assert!(m.call_id().starts_with(CALL_ID_PREFIX));
            assert!(m.branch().unwrap().starts_with(b"z9hG4bK"));
            let h = crate::worker::owner::call_id_hash(777, data).unwrap();
            assert_eq!(owner_of(h, 3), worker, "owned by the prober");
            let text = String::from_utf8_lossy(data);
            assert!(text.starts_with(&format!("OPTIONS sip:{to} SIP/2.0\r\n")));
            assert!(text.contains("From: <sip:siplb@127.0.0.1:5060>;tag="));
        }
        assert_eq!(p.next_deadline(), Some(t0 + 100 * MS), "the timeout first");
    }
}

/// Two runs (a restart, or two nodes probing one gateway) never send the same Call-ID, From
/// tag or branch: each has a token of its own in them.
#[test]
fn probes_of_two_runs_share_no_call_id_tag_or_branch() {
    let g = gateways();
    let first = |token: &str| {
        let mut p = Prober::new(0, 1, 1, local(), token.into());
        let mut out = Output::default();
        p.tick(Instant::now(), &g, &mut out);
        let (_, data) = sent(&mut out).remove(0);
        let m = SipMsg::parse(&data).unwrap();
        let tag = m.from_tag().unwrap().to_vec();
        (m.call_id().to_vec(), tag, m.branch().unwrap().to_vec())
    };
    let (a, b) = (first("9f3c2a10d4e5b6a7"), first("01b2c3d4e5f60718"));
    assert_ne!(a.0, b.0, "Call-ID");
    assert_ne!(a.1, b.1, "From tag");
    assert_ne!(a.2, b.2, "branch");
    assert!(
        a.1.windows(16).any(|w| w == b"9f3c2a10d4e5b6a7"),
        "{:?}",
        a.1
    );
}

#[test]
fn silence_takes_a_gateway_down_after_two_probes_and_one_answer_brings_it_back() {
    let g = gateways();
    let mut p = Prober::new(0, 1, 1, local(), "t0k".into());
    let mut out = Output::default();
    let mut now = Instant::now();
    let mut downs = Vec::new();
    let mut changes = Vec::new();
    // gw1 answers every probe; gw2 none of the first two, then answers.
    for round in 0..4 {
        p.tick(now, &g, &mut out);
        let s = sent(&mut out);
        assert_eq!(s.len(), 2, "round {round}: one probe each");
        changes.extend(answer(&mut p, now + 3 * MS, gw(1), &s[0].1, 200, &g));
        if round >= 2 {
            changes.extend(answer(&mut p, now + 5 * MS, gw(2), &s[1].1, 200, &g));
        }
        // The timeout passes.
        now += 100 * MS;
        p.tick(now, &g, &mut out);
        assert!(sent(&mut out).is_empty());
        downs.push((up(&g, 0), up(&g, 1)));
        now += 100 * MS;
    }
    assert_eq!(
        downs,
        [(true, true), (true, false), (true, true), (true, true)]
    );
    // Each change is reported once, for the log.
    changes.extend(std::iter::from_fn(|| out.poll_event()));
    let mut reported: Vec<(SocketAddr, bool)> = changes
        .iter()
        .filter_map(|e| match e {
            crate::proxy::Event::Gateway(c) => Some((c.gateway, c.up)),
            _ => None,
        })
        .collect();
    reported.sort();
    assert_eq!(reported, [(gw(2), false), (gw(2), true)]);
    let h = &g.sets[0].gateways[0].state.health;
    assert_eq!(h.rtt(), Some(3 * MS));
    assert_eq!(h.last_reply(), Some(Some(200)));
    assert_eq!(g.sets[0].gateways[1].state.health.probes(), (4, 2));
}

#[test]
fn a_failure_code_counts_and_other_answers_do_not() {
    let mut g = gateways();
    g.sets[0].probe.as_mut().unwrap().thresholds.down_after = 1;
    let mut p = Prober::new(0, 1, 1, local(), "t0k".into());
    let mut out = Output::default();
    let now = Instant::now();
    p.tick(now, &g, &mut out);
    let s = sent(&mut out);
    answer(&mut p, now, gw(1), &s[0].1, 404, &g);
    answer(&mut p, now, gw(2), &s[1].1, 503, &g);
    assert!(up(&g, 0), "404: alive");
    assert!(!up(&g, 1), "503: a failure");
    assert_eq!(p.outstanding(), 0);
}

#[test]
fn replies_from_elsewhere_provisional_or_late_are_taken_and_ignored() {
    let g = gateways();
    let mut p = Prober::new(0, 1, 1, local(), "t0k".into());
    let mut out = Output::default();
    let now = Instant::now();
    p.tick(now, &g, &mut out);
    let s = sent(&mut out);
    // From the other gateway, and a 100: still out.
    answer(&mut p, now, gw(2), &s[0].1, 200, &g);
    answer(&mut p, now, gw(1), &s[0].1, 100, &g);
    assert_eq!(p.outstanding(), 2);
    answer(&mut p, now, gw(1), &s[0].1, 200, &g);
    // Its retransmission.
    answer(&mut p, now, gw(1), &s[0].1, 200, &g);
    assert_eq!(p.outstanding(), 1);
    // Not a probe's at all.
    let other = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
        From: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\n\r\n";
    let m = SipMsg::parse(other).unwrap();
    assert!(!p.on_response(now, gw(1), &m, &g, &mut Output::default()));
}

#[test]
fn disabled_or_unprobed_gateways_get_no_probe_and_a_reload_keeps_the_schedule() {
    let g = gateways();
    g.sets[0].gateways[1]
        .state
        .health
        .force(crate::proxy::Admin::Disabled, true);
    let mut p = Prober::new(0, 1, 1, local(), "t0k".into());
    let mut out = Output::default();
    let now = Instant::now();
    p.tick(now, &g, &mut out);
    assert_eq!(sent(&mut out).len(), 1);
    // A reload that drops probing of the set: nothing more is sent.
    let mut g2 = g.clone();
    g2.sets[0].probe = None;
    p.reconfigured();
    p.tick(now + 500 * MS, &g2, &mut out);
    assert!(sent(&mut out).is_empty());
    assert_eq!(p.next_deadline(), None);
    // Probing again: the gateways are probed at once.
    p.reconfigured();
    p.tick(now + 600 * MS, &g, &mut out);
    assert_eq!(sent(&mut out).len(), 1);
}
