//! Gateway probing through the shard: worker 0's shard sends the OPTIONS on its own timers,
//! takes their replies before any transaction matching (not counted as dropped replies), and
//! a gateway marked down gets no new INVITE until it answers again.

use super::*;
use crate::proxy::ProbeConfig;

/// Probes every 200 ms with a 100 ms timeout, down after 2 failures, up after 1 answer.
fn probing() -> Harness {
    let mut h = Harness::with_config(|c| {
        let mut p = ProbeConfig::every(200 * MS);
        p.timeout = 100 * MS;
        let set = &mut c.routing.gateways.sets[0];
        set.probe = Some(p);
        for g in &set.gateways {
            g.state.health.set_probing(true);
        }
    });
    h.shard.enable_probing(0, 1, 7);
    h.shard.handle_timeout(h.now);
    h
}

/// The OPTIONS sent now, one per gateway in order; `answering` gateways reply 200.
#[track_caller]
fn probe_round(h: &mut Harness, answering: &[SocketAddr]) {
    let out = h.take();
    assert_eq!(
        out.iter().map(|o| o.dst).collect::<Vec<_>>(),
        [gw1(), gw2()],
        "{out:#?}"
    );
    for o in &out {
        assert!(o.is_request(Method::Options), "{o:?}");
        if answering.contains(&o.dst) {
            h.deliver(o.dst, &response(o, 200, Some("gw")));
        }
    }
    h.expect_nothing();
}

fn usable(h: &Harness, i: usize) -> bool {
    h.shard.cfg.routing.gateways.sets[0].gateways[i].usable()
}

#[test]
fn a_silent_gateway_gets_no_invite_until_it_answers_again() {
    let mut h = probing();
    let dropped = h.stats.drop_replies.get();
    probe_round(&mut h, &[gw1(), gw2()]);
    assert_eq!(
        h.stats.drop_replies.get(),
        dropped,
        "probe replies are taken"
    );
    // gw2 falls silent: two rounds, then it is down.
    for round in 0..2 {
        h.advance(200 * MS);
        assert!(usable(&h, 1), "round {round}: not down yet");
        probe_round(&mut h, &[gw1()]);
    }
    h.advance(150 * MS);
    assert!(usable(&h, 0) && !usable(&h, 1));
    for i in 0..10 {
        let (_, fwd) = h.start_call(&invite(&format!("down-{i}"), &format!("z9hG4bK-d{i}")));
        assert_eq!(fwd.dst, gw1(), "no INVITE to the gateway down");
    }
    // It answers again: up at once.
    h.advance(50 * MS);
    probe_round(&mut h, &[gw1(), gw2()]);
    assert!(usable(&h, 1));
}
