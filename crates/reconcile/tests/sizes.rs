//! Bytes exchanged to reconcile a 100,000-record view, against sending every id.
//!
//! Run with `cargo test -p weft-reconcile --test sizes -- --nocapture` to see the table.

use weft_reconcile::element_id;
use weft_reconcile::protocol::{
    Config, Response, Step, agent_request, agent_resolve, controller_respond,
};

const RECORDS: usize = 100_000;

#[test]
fn reconciling_100k_records_sends_a_fraction_of_the_ids() {
    let cfg = Config::default();
    // Ids as the southbound computes them: a key and a content hash per record.
    let controller: Vec<u64> = (0..RECORDS)
        .map(|i| element_id(format!("port/{i}").as_bytes(), &(i as u64).to_le_bytes()))
        .collect();
    let baseline = RECORDS * 8;
    println!("records {RECORDS}; baseline, every id at 8 bytes: {baseline} bytes");
    println!("  diffs | request (strata) | response (IBLT) | fetch ids | total | vs baseline");
    for diffs in [10usize, 100, 1000] {
        // A stale record (its content changed) is two differences, the old id and the new one;
        // a record the agent never saw is one. Mix both to make `diffs` in all.
        let stale = diffs / 4;
        let missing = diffs - 2 * stale;
        let mut agent = controller.clone();
        for (n, slot) in agent.iter_mut().take(stale).enumerate() {
            *slot = element_id(format!("port/{n}").as_bytes(), b"stale");
        }
        agent.truncate(RECORDS - missing);

        let req = agent_request(&cfg, &agent, 0).unwrap();
        let request_bytes = req.strata.to_bytes().len() + 12; // + attempt and set length
        let resp = controller_respond(&cfg, &req, &controller);
        let Response::Iblt { iblt, estimate, .. } = &resp else {
            panic!("{diffs} differences: expected a table, got {resp:?}");
        };
        let response_bytes = iblt.to_bytes().len();
        let Step::Done(delta) = agent_resolve(&cfg, &resp, &agent) else {
            panic!("{diffs} differences: first attempt did not decode");
        };
        // Stale versions are dropped and refetched; missing records are fetched.
        assert_eq!(delta.drop.len(), stale);
        assert_eq!(delta.fetch.len(), stale + missing);
        let fetch_bytes = delta.fetch.len() * 8;
        let total = request_bytes + response_bytes + fetch_bytes;
        println!(
            "  {diffs:5} | {request_bytes:16} | {response_bytes:15} | {fetch_bytes:9} | {total:6} | {:.1}% (estimate {estimate}, {} cells)",
            100.0 * total as f64 / baseline as f64,
            iblt.cells()
        );
        assert!(
            total * 10 < baseline,
            "{diffs} differences cost {total} bytes, baseline {baseline}"
        );
    }
}
