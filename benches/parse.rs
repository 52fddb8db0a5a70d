//! siplb's zero-copy parser against rsip on the same bytes, a typical INVITE with SDP and a
//! 200 OK. `cargo bench -p siplb-benches --bench parse`.
//!
//! - `parse/…`: the parse alone (`SipMsg::parse` against `SipMessage::try_from`).
//! - `read/…`: the parse plus what a proxy reads of every message (Call-ID, CSeq, top-Via
//!   branch, To tag), through each library's own accessors.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use siplb::sip::SipMsg;
use siplb_benches::{INVITE, OK, rsip_read, siplb_read};
use std::hint::black_box;

const MESSAGES: [(&str, &[u8]); 2] = [("invite_sdp", INVITE), ("ok_200", OK)];

fn parse(c: &mut Criterion) {
    for (name, bytes) in MESSAGES {
        let mut g = c.benchmark_group(format!("parse/{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("siplb", |b| {
            b.iter(|| {
                SipMsg::parse(black_box(bytes))
                    .expect("valid")
                    .headers()
                    .len()
            })
        });
        g.bench_function("rsip", |b| {
            b.iter(|| rsip::SipMessage::try_from(black_box(bytes)).expect("valid"))
        });
        g.finish();
    }
}

fn read(c: &mut Criterion) {
    for (name, bytes) in MESSAGES {
        let mut g = c.benchmark_group(format!("read/{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("siplb", |b| b.iter(|| siplb_read(black_box(bytes))));
        g.bench_function("rsip", |b| b.iter(|| rsip_read(black_box(bytes))));
        g.finish();
    }
}

criterion_group!(benches, parse, read);
criterion_main!(benches);
