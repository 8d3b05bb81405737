//! Time and bytes of each exchange step for a 100,000-id view, beside the baseline of sending
//! every id. Run with `cargo bench -p weft-reconcile`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use weft_reconcile::protocol::{
    Config, Response, Step, agent_request, agent_resolve, controller_respond,
};

const RECORDS: u64 = 100_000;

fn ids(range: std::ops::Range<u64>) -> Vec<u64> {
    // Distinct, uniform-looking ids without hashing 100k records in every iteration.
    range
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995)
        .collect()
}

fn bench(c: &mut Criterion) {
    let cfg = Config::default();
    let controller = ids(0..RECORDS);
    for diffs in [10u64, 100, 1000] {
        // The agent misses `diffs` of the controller's ids.
        let agent = ids(diffs..RECORDS);
        let req = agent_request(&cfg, &agent, 0).unwrap();
        let resp = controller_respond(&cfg, &req, &controller);
        let Response::Iblt { iblt, .. } = &resp else {
            panic!("expected a table for {diffs} differences");
        };
        let Step::Done(delta) = agent_resolve(&cfg, &resp, &agent) else {
            panic!("expected a delta for {diffs} differences");
        };
        let total = req.strata.to_bytes().len() + iblt.to_bytes().len() + delta.fetch.len() * 8;
        println!(
            "{RECORDS} ids, {diffs} differences: {total} bytes exchanged, baseline (every id) {} bytes",
            RECORDS * 8
        );
        let mut g = c.benchmark_group(format!("100k/{diffs}diffs"));
        g.sample_size(10);
        g.bench_function("agent_request", |b| {
            b.iter(|| agent_request(&cfg, black_box(&agent), 0))
        });
        g.bench_function("controller_respond", |b| {
            b.iter(|| controller_respond(&cfg, black_box(&req), &controller))
        });
        g.bench_function("agent_resolve", |b| {
            b.iter(|| agent_resolve(&cfg, black_box(&resp), &agent))
        });
        g.bench_function("baseline_encode_all_ids", |b| {
            b.iter(|| {
                black_box(&controller)
                    .iter()
                    .flat_map(|id| id.to_le_bytes())
                    .collect::<Vec<u8>>()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
