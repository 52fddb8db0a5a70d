//! Parse of a typical INVITE with SDP and of a 200 OK: siplb's zero-copy parser against rsip
//! on the same bytes. `cargo bench -p siplb-benches --bench parse`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rsip::message::HasHeaders;
use siplb::sip::SipMsg;
use siplb_benches::{INVITE, OK};
use std::hint::black_box;

fn parse(c: &mut Criterion) {
    for (name, bytes) in [("invite_sdp", INVITE), ("ok_200", OK)] {
        let mut g = c.benchmark_group(format!("parse/{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("siplb", |b| {
            b.iter(|| {
                let m = SipMsg::parse(black_box(bytes)).expect("valid");
                // What the proxy reads of every message: Call-ID, CSeq, branch, To tag.
                black_box((
                    m.call_id().len(),
                    m.cseq,
                    m.branch().map(<[u8]>::len),
                    m.to_tag().map(<[u8]>::len),
                ));
            })
        });
        g.bench_function("rsip", |b| {
            b.iter(|| {
                let m = rsip::SipMessage::try_from(black_box(bytes)).expect("valid");
                black_box(m.headers().iter().count());
            })
        });
        g.finish();
    }
}

criterion_group!(benches, parse);
criterion_main!(benches);
