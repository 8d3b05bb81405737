//! The reconciliation exchange as three pure steps, one per message.
//!
//! ```text
//! agent                                             controller (any replica, stateless)
//!   agent_request(ids, attempt) ── Request ──────────►
//!                                                     controller_respond(request, ids)
//!                               ◄────────── Response ─  (IBLT sized from the estimate,
//!   agent_resolve(response, ids)                         or "take a full snapshot")
//!     ├─ Done(Delta): drop these ids, fetch those ──►   (records sent as usual)
//!     ├─ Retry(Request): send it, attempt + 1 ───────►
//!     └─ FullSnapshot(Fallback) ─────────────────────►
//! ```
//!
//! Nothing is kept between steps: a retry carries the agent's estimator again (about 16 KB for
//! 100k ids) so that it may land on another controller replica. Each attempt's table uses its
//! own hash functions and twice the cells of the one before.

use crate::iblt::{Iblt, MAX_CELLS, ParamError};
use crate::strata::{StrataEstimator, StrataParams};
use crate::{Difference, derive_key};
use std::collections::HashSet;
use thiserror::Error;

/// Tuning of the exchange. Both sides should use the same; only `strata` must match, and it
/// travels inside the request.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Shape of the agent's estimator.
    pub strata: StrataParams,
    /// IBLT cells per estimated difference on the first attempt. Two covers the estimator's
    /// low tail (1% of estimates fall below 0.75 of the truth for differences past 100).
    pub cells_per_diff: f64,
    /// Cells added to every table. Small tables fail mostly when two ids share all their
    /// cells, and headroom makes that rare.
    pub headroom_cells: usize,
    /// Hash functions of the IBLT (3 or 4). Four: with three, about 1% of small differences
    /// (d <= 60) failed to peel at 2d + 32 cells, against 0.1% with four.
    pub k: u8,
    /// Take a full snapshot when the estimated difference exceeds this share of the larger
    /// set. Past a quarter, the IBLT (about 27 bytes per difference) outweighs a plain list of
    /// every id (8 bytes per element).
    pub max_diff_fraction: f64,
    /// Attempts (each with a table twice the size) before a full snapshot.
    pub max_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            strata: StrataParams::default(),
            cells_per_diff: 2.0,
            headroom_cells: 32,
            k: 4,
            max_diff_fraction: 0.25,
            max_attempts: 2,
        }
    }
}

impl Config {
    /// Cells of the table for an estimated difference `estimate` at attempt `attempt` (0-based).
    pub fn cells_for(&self, estimate: usize, attempt: u32) -> usize {
        // Saturating throughout: the estimate may come from a hostile estimator.
        let first = ((estimate as f64 * self.cells_per_diff).ceil() as usize)
            .saturating_add(self.headroom_cells);
        first.saturating_mul(1usize << attempt.min(16))
    }
}

/// Agent → controller: the agent's estimator and set size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// 0 for the first try, then one more for each retry.
    pub attempt: u32,
    /// Number of ids the agent holds.
    pub set_len: u64,
    /// The agent's ids, summarized.
    pub strata: StrataEstimator,
}

/// Controller → agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The controller's ids in a table sized for the estimated difference.
    Iblt {
        /// The attempt this answers.
        attempt: u32,
        /// The estimated size of the symmetric difference.
        estimate: usize,
        /// The controller's table.
        iblt: Iblt,
    },
    /// Reconciliation would not pay or failed: send the whole view.
    FullSnapshot(Fallback),
}

/// What the agent does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Reconciled: apply this delta.
    Done(Delta),
    /// The table did not peel: send this request (next attempt, larger table).
    Retry(Request),
    /// Ask for a full snapshot.
    FullSnapshot(Fallback),
}

/// The ids that bring the agent's set to the controller's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Ids the agent holds and the controller does not: delete those records.
    pub drop: Vec<u64>,
    /// Ids the controller holds and the agent does not: ask for those records.
    pub fetch: Vec<u64>,
}

/// Why reconciliation gave way to a full snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Fallback {
    /// The estimated difference is too large a share of the sets for reconciliation to pay.
    #[error(
        "sets too different to reconcile: estimated difference {estimate} for a set of {set_len}; taking a full snapshot"
    )]
    TooDifferent {
        /// Estimated size of the symmetric difference.
        estimate: usize,
        /// Size of the larger set.
        set_len: u64,
    },
    /// The table did not peel after the allowed attempts.
    #[error(
        "reconciliation table did not decode after {attempts} attempts; taking a full snapshot"
    )]
    DecodeFailed {
        /// Attempts made.
        attempts: u32,
    },
    /// The parameters of the exchange were out of range (a configuration error).
    #[error(
        "reconciliation parameters rejected ({0}); taking a full snapshot, fix the configuration"
    )]
    Incompatible(ParamError),
}

/// Step 1, agent: summarize its ids (a set, no duplicates) into a request.
pub fn agent_request(cfg: &Config, ids: &[u64], attempt: u32) -> Result<Request, ParamError> {
    let mut strata = StrataEstimator::new(cfg.strata)?;
    strata.extend(ids.iter().copied());
    Ok(Request {
        attempt,
        set_len: ids.len() as u64,
        strata,
    })
}

/// Step 2, controller: estimate the difference between the agent's ids and its own `ids`
/// and answer with a table of its ids, or with a full-snapshot signal.
pub fn controller_respond(cfg: &Config, req: &Request, ids: &[u64]) -> Response {
    if req.attempt >= cfg.max_attempts {
        return Response::FullSnapshot(Fallback::DecodeFailed {
            attempts: req.attempt,
        });
    }
    let mut mine = req.strata.empty_like();
    mine.extend(ids.iter().copied());
    let estimate = match req.strata.estimate(&mine) {
        Ok(e) => e,
        Err(e) => return Response::FullSnapshot(Fallback::Incompatible(e)),
    };
    let set_len = req.set_len.max(ids.len() as u64);
    let cells = cfg.cells_for(estimate, req.attempt);
    if estimate as f64 > cfg.max_diff_fraction * set_len as f64 || cells > MAX_CELLS {
        return Response::FullSnapshot(Fallback::TooDifferent { estimate, set_len });
    }
    // A fresh seed per attempt so that a retry does not meet the same unlucky collisions.
    let seed = derive_key(0x5745_4654_4942_4c54, u64::from(req.attempt));
    let mut iblt = match Iblt::new(cells, cfg.k, seed) {
        Ok(t) => t,
        Err(e) => return Response::FullSnapshot(Fallback::Incompatible(e)),
    };
    iblt.extend(ids.iter().copied());
    Response::Iblt {
        attempt: req.attempt,
        estimate,
        iblt,
    }
}

/// Step 3, agent: subtract its own ids from the controller's table and peel it.
///
/// A decode is accepted only if the agent holds every id to drop and none to fetch, which
/// catches the rare false peel that slipped past the checksum.
pub fn agent_resolve(cfg: &Config, resp: &Response, ids: &[u64]) -> Step {
    let (attempt, theirs) = match resp {
        Response::FullSnapshot(f) => return Step::FullSnapshot(f.clone()),
        Response::Iblt { attempt, iblt, .. } => (*attempt, iblt),
    };
    let mut mine = theirs.empty_like();
    mine.extend(ids.iter().copied());
    let decoded = theirs
        .subtract(&mine)
        .ok()
        .and_then(|t| t.decode().ok())
        .filter(|d| consistent_with(ids, d));
    match decoded {
        Some(Difference {
            only_in_a,
            only_in_b,
        }) => Step::Done(Delta {
            drop: only_in_b,
            fetch: only_in_a,
        }),
        None if attempt.saturating_add(1) < cfg.max_attempts => {
            match agent_request(cfg, ids, attempt + 1) {
                Ok(req) => Step::Retry(req),
                Err(e) => Step::FullSnapshot(Fallback::Incompatible(e)),
            }
        }
        None => Step::FullSnapshot(Fallback::DecodeFailed {
            attempts: attempt.saturating_add(1),
        }),
    }
}

/// Whether the agent holds every id to drop and none of the ids to fetch.
fn consistent_with(ids: &[u64], d: &Difference) -> bool {
    let drop: HashSet<u64> = d.only_in_b.iter().copied().collect();
    let fetch: HashSet<u64> = d.only_in_a.iter().copied().collect();
    let mut held = 0;
    for id in ids {
        if fetch.contains(id) {
            return false;
        }
        held += usize::from(drop.contains(id));
    }
    held == d.only_in_b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the whole exchange in memory and returns the agent's last step.
    fn exchange(cfg: &Config, agent: &[u64], controller: &[u64]) -> Step {
        let mut req = agent_request(cfg, agent, 0).unwrap();
        loop {
            let resp = controller_respond(cfg, &req, controller);
            match agent_resolve(cfg, &resp, agent) {
                Step::Retry(next) => req = next,
                step => return step,
            }
        }
    }

    fn sorted(mut v: Vec<u64>) -> Vec<u64> {
        v.sort_unstable();
        v
    }

    #[test]
    fn reconciles_drops_and_fetches() {
        let cfg = Config::default();
        let agent: Vec<u64> = (0..10_000).collect();
        let controller: Vec<u64> = (5..10_000).chain(20_000..20_030).collect();
        let step = exchange(&cfg, &agent, &controller);
        let Step::Done(delta) = step else {
            panic!("expected a delta, got {step:?}")
        };
        assert_eq!(sorted(delta.drop), (0..5).collect::<Vec<_>>());
        assert_eq!(sorted(delta.fetch), (20_000..20_030).collect::<Vec<_>>());
    }

    #[test]
    fn equal_sets_give_an_empty_delta() {
        let ids: Vec<u64> = (0..1000).collect();
        let step = exchange(&Config::default(), &ids, &ids);
        assert_eq!(step, Step::Done(Delta::default()));
        let step = exchange(&Config::default(), &[], &[]);
        assert_eq!(step, Step::Done(Delta::default()));
    }

    #[test]
    fn very_different_sets_take_a_full_snapshot() {
        let agent: Vec<u64> = (0..1000).collect();
        let controller: Vec<u64> = (500..1500).collect();
        let step = exchange(&Config::default(), &agent, &controller);
        assert!(
            matches!(step, Step::FullSnapshot(Fallback::TooDifferent { .. })),
            "{step:?}"
        );
        // An empty agent (a fresh host) is the extreme case.
        let step = exchange(&Config::default(), &[], &controller);
        assert!(matches!(
            step,
            Step::FullSnapshot(Fallback::TooDifferent { .. })
        ));
    }

    #[test]
    fn undersized_table_retries_then_falls_back() {
        // Tables far too small for the difference: every attempt fails to peel.
        let cfg = Config {
            cells_per_diff: 0.1,
            headroom_cells: 0,
            ..Config::default()
        };
        let agent: Vec<u64> = (0..10_000).collect();
        let controller: Vec<u64> = (400..10_000).collect();
        let req = agent_request(&cfg, &agent, 0).unwrap();
        let resp = controller_respond(&cfg, &req, &controller);
        let Step::Retry(retry) = agent_resolve(&cfg, &resp, &agent) else {
            panic!("first failure should retry");
        };
        assert_eq!(retry.attempt, 1);
        let resp = controller_respond(&cfg, &retry, &controller);
        let Response::Iblt { iblt, estimate, .. } = &resp else {
            panic!("retry should get a table");
        };
        assert_eq!(iblt.cells(), cfg.cells_for(*estimate, 1).div_ceil(3) * 3);
        assert_eq!(
            agent_resolve(&cfg, &resp, &agent),
            Step::FullSnapshot(Fallback::DecodeFailed { attempts: 2 })
        );
        // A request past the last attempt is refused by the controller too.
        let late = agent_request(&cfg, &agent, 2).unwrap();
        assert!(matches!(
            controller_respond(&cfg, &late, &controller),
            Response::FullSnapshot(Fallback::DecodeFailed { attempts: 2 })
        ));
    }

    #[test]
    fn bogus_drop_ids_are_not_accepted() {
        // A table claiming the agent holds an id it does not have must not be applied.
        let cfg = Config::default();
        let agent: Vec<u64> = (0..100).collect();
        let mut iblt = Iblt::new(cfg.cells_for(1, 0), cfg.k, 1).unwrap();
        iblt.extend(agent.iter().copied());
        iblt.remove(999_999);
        let resp = Response::Iblt {
            attempt: 1,
            estimate: 1,
            iblt,
        };
        assert_eq!(
            agent_resolve(&cfg, &resp, &agent),
            Step::FullSnapshot(Fallback::DecodeFailed { attempts: 2 })
        );
    }

    #[test]
    fn deltas_that_contradict_the_agent_set_are_rejected() {
        let ids = [1, 2, 3];
        let diff = |fetch: Vec<u64>, drop: Vec<u64>| Difference {
            only_in_a: fetch,
            only_in_b: drop,
        };
        assert!(consistent_with(&ids, &diff(vec![9], vec![2, 3])));
        assert!(
            !consistent_with(&ids, &diff(vec![1], vec![])),
            "fetch of a held id"
        );
        assert!(
            !consistent_with(&ids, &diff(vec![], vec![4])),
            "drop of a missing id"
        );
        assert!(
            !consistent_with(&ids, &diff(vec![], vec![2, 2])),
            "same drop twice"
        );
    }
}
