//! End-to-end properties: the exchange recovers exactly the difference, the estimator is
//! accurate enough to size tables, and decoders survive arbitrary bytes.

use proptest::prelude::*;
use std::collections::HashSet;
use weft_reconcile::protocol::{
    Config, Delta, Response, Step, agent_request, agent_resolve, controller_respond,
};
use weft_reconcile::{Iblt, StrataEstimator, StrataParams};

/// A deterministic stream of uniform ids (splitmix64), so measured rates are reproducible.
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn take(&mut self, n: usize) -> Vec<u64> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// An agent and a controller set sharing `common` ids, with `only_agent` and
/// `only_controller` ids of their own.
struct Case {
    agent: Vec<u64>,
    controller: Vec<u64>,
    only_agent: Vec<u64>,
    only_controller: Vec<u64>,
}

fn case(rng: &mut Ids, common: usize, only_agent: usize, only_controller: usize) -> Case {
    let shared = rng.take(common);
    let only_agent = rng.take(only_agent);
    let only_controller = rng.take(only_controller);
    Case {
        agent: shared.iter().chain(&only_agent).copied().collect(),
        controller: shared.iter().chain(&only_controller).copied().collect(),
        only_agent,
        only_controller,
    }
}

/// The agent's side of the exchange until it stops; returns the last step and the number of
/// attempts the controller answered with a table.
fn run(cfg: &Config, c: &Case) -> (Step, u32) {
    let mut req = agent_request(cfg, &c.agent, 0).unwrap();
    let mut tables = 0;
    loop {
        let resp = controller_respond(cfg, &req, &c.controller);
        tables += u32::from(matches!(resp, Response::Iblt { .. }));
        match agent_resolve(cfg, &resp, &c.agent) {
            Step::Retry(next) => req = next,
            step => return (step, tables),
        }
    }
}

fn as_set(v: &[u64]) -> HashSet<u64> {
    v.iter().copied().collect()
}

fn is_exact(delta: &Delta, c: &Case) -> bool {
    as_set(&delta.drop) == as_set(&c.only_agent)
        && as_set(&delta.fetch) == as_set(&c.only_controller)
        && delta.drop.len() == c.only_agent.len()
        && delta.fetch.len() == c.only_controller.len()
}

/// The recommended sizing recovers the exact difference on the first attempt in at least 99%
/// of cases for differences of 1 to 400, and a wrong delta is never returned.
#[test]
fn recommended_sizing_decodes_at_least_99_percent_first_time() {
    let cfg = Config::default();
    let mut rng = Ids(2011);
    let trials = 2000;
    let (mut first, mut done, mut wrong) = (0, 0, 0);
    for _ in 0..trials {
        let d = 1 + (rng.next() % 400) as usize;
        let to_agent = (rng.next() % (d as u64 + 1)) as usize;
        let c = case(&mut rng, 2000, to_agent, d - to_agent);
        match run(&cfg, &c) {
            (Step::Done(delta), tables) => {
                done += 1;
                first += u32::from(tables == 1);
                wrong += u32::from(!is_exact(&delta, &c));
            }
            (other, _) => eprintln!("d={d}: {other:?}"),
        }
    }
    let first_rate = f64::from(first) / f64::from(trials);
    let done_rate = f64::from(done) / f64::from(trials);
    println!(
        "trials {trials}: first-attempt success {first_rate:.4}, with one retry {done_rate:.4}, wrong {wrong}"
    );
    assert_eq!(
        wrong, 0,
        "a decoded delta differed from the true difference"
    );
    assert!(first_rate >= 0.99, "first-attempt success {first_rate}");
    assert!(done_rate >= 0.995, "success with retry {done_rate}");
}

/// Exact below the point where the sparsest strata stop peeling, and within a bounded factor
/// past it.
#[test]
fn estimator_accuracy() {
    let mut rng = Ids(7);
    let trials = 300;
    for d in [5usize, 30, 100, 300, 1000] {
        let mut ratios: Vec<f64> = (0..trials)
            .map(|_| {
                let c = case(&mut rng, 500, d / 2, d - d / 2);
                let a = StrataEstimator::from_ids(c.agent.iter().copied());
                let b = StrataEstimator::from_ids(c.controller.iter().copied());
                a.estimate(&b).unwrap() as f64 / d as f64
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let median = ratios[trials / 2];
        let within = ratios.iter().filter(|r| (0.7..=1.4).contains(*r)).count();
        let exact = ratios.iter().filter(|&&r| r == 1.0).count();
        println!(
            "d={d}: median {median:.3}, min {:.3}, max {:.3}, {within}/{trials} within [0.7, 1.4], {exact} exact",
            ratios[0],
            ratios[trials - 1]
        );
        if d <= 30 {
            assert!(exact * 100 >= trials * 99, "d={d}: only {exact} exact");
        }
        assert!((0.9..=1.1).contains(&median), "d={d}: median {median}");
        assert!(within * 100 >= trials * 97, "d={d}: only {within} within");
    }
}

fn params() -> impl Strategy<Value = (usize, u8, u64)> {
    (1usize..200, 3u8..=4, any::<u64>())
}

proptest! {
    // Regressions are kept beside this file (tests/ has no lib.rs for the default to find).
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::with_cases(256)
    })]

    /// Any difference up to a few hundred ids, in a table of 2d + 32 cells sized from the true
    /// difference, decodes to exactly that difference or reports failure: never a wrong answer.
    #[test]
    fn decode_is_exact_or_fails(
        common in prop::collection::hash_set(any::<u64>(), 0..300),
        extra in prop::collection::hash_set(any::<u64>(), 0..300),
        split in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let extra: Vec<u64> = extra.difference(&common).copied().collect();
        let cut = if extra.is_empty() { 0 } else { split.index(extra.len() + 1) };
        let (only_a, only_b) = extra.split_at(cut);
        let mut a = Iblt::new(2 * extra.len() + 32, 4, seed).unwrap();
        let mut b = a.empty_like();
        a.extend(common.iter().chain(only_a).copied());
        b.extend(common.iter().chain(only_b).copied());
        if let Ok(diff) = a.subtract(&b).unwrap().decode() {
            prop_assert_eq!(as_set(&diff.only_in_a), as_set(only_a));
            prop_assert_eq!(as_set(&diff.only_in_b), as_set(only_b));
            prop_assert_eq!(diff.len(), extra.len());
        }
    }

    /// The whole exchange, on sets where the difference is small relative to the sets.
    #[test]
    fn exchange_returns_the_difference(
        seed in any::<u64>(),
        common in 400usize..2000,
        only_agent in 0usize..100,
        only_controller in 0usize..100,
    ) {
        let c = case(&mut Ids(seed), common, only_agent, only_controller);
        match run(&Config::default(), &c).0 {
            Step::Done(delta) => prop_assert!(is_exact(&delta, &c)),
            other => prop_assert!(
                matches!(other, Step::FullSnapshot(_)),
                "unexpected {other:?}"
            ),
        }
    }

    #[test]
    fn iblt_bytes_round_trip((cells, k, seed) in params(), ids in prop::collection::vec(any::<u64>(), 0..100), removed in prop::collection::vec(any::<u64>(), 0..20)) {
        let mut t = Iblt::new(cells, k, seed).unwrap();
        t.extend(ids);
        for id in removed {
            t.remove(id);
        }
        prop_assert_eq!(Iblt::from_bytes(&t.to_bytes()).unwrap(), t);
    }

    #[test]
    fn strata_bytes_round_trip(strata in 1u8..=64, cells4 in 1u16..=40, seed in any::<u64>(), ids in prop::collection::vec(any::<u64>(), 0..500)) {
        let mut s = StrataEstimator::new(StrataParams { strata, cells: cells4 * 4, k: 4, seed }).unwrap();
        s.extend(ids);
        prop_assert_eq!(StrataEstimator::from_bytes(&s.to_bytes()).unwrap(), s);
    }

    /// Arbitrary bytes never panic the decoders, and whatever decodes can be peeled, subtracted
    /// and fed to the exchange without panicking.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        exercise(&bytes);
        // Also behind valid headers, so that the bodies are reached.
        for header in [&[b'I', 1, 3, 24][..], &[b'S', 1, 2, 4, 8]] {
            let mut b = header.to_vec();
            b.extend(&bytes);
            exercise(&b);
        }
    }

    /// Valid encodings with a few bytes changed: the inputs a corrupting link produces.
    #[test]
    fn mutated_encodings_never_panic(
        ids in prop::collection::vec(any::<u64>(), 0..200),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut t = Iblt::new(60, 4, 1).unwrap();
        t.extend(ids.iter().copied());
        let s = StrataEstimator::from_ids(ids);
        for mut b in [t.to_bytes(), s.to_bytes()] {
            for (i, v) in &edits {
                let i = i.index(b.len());
                b[i] = *v;
            }
            exercise(&b);
        }
    }
}

fn exercise(bytes: &[u8]) {
    if let Ok(t) = Iblt::from_bytes(bytes) {
        let _ = t.decode();
        let _ = t.subtract(&t.empty_like()).map(|d| d.decode());
        let resp = Response::Iblt {
            attempt: u32::MAX,
            estimate: usize::MAX,
            iblt: t,
        };
        let _ = agent_resolve(&Config::default(), &resp, &[1, 2, 3]);
    }
    if let Ok(s) = StrataEstimator::from_bytes(bytes) {
        let _ = s.estimate(&s.empty_like());
        let req = weft_reconcile::protocol::Request {
            attempt: 0,
            set_len: u64::MAX,
            strata: s,
        };
        let _ = controller_respond(&Config::default(), &req, &[1, 2, 3]);
    }
}
