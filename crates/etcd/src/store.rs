//! `EtcdStore`: the [`Store`] trait on etcd's KV and Watch services.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tonic::Code;
use weft_store::{
    Compare, KeyValue, Op, RangeRequest, RangeResponse, Revision, Store, StoreError, Txn,
    TxnOutcome, WatchStream,
};

use crate::client::{Conn, Retry, answer_error, request};
use crate::endpoints::parse_endpoint;
use crate::pb::etcdserverpb as pb;
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::pb::mvccpb;
use crate::watch;

/// Timeouts and retry budgets of an [`EtcdStore`].
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// How long dialling one endpoint may take before the next one is tried.
    pub connect_timeout: Duration,
    /// How long one request may wait for its answer.
    pub request_timeout: Duration,
    /// How long a call keeps trying other endpoints (with backoff) before it reports
    /// the store unavailable.
    pub retry_for: Duration,
    /// How long a broken watch keeps trying to resume on any endpoint before its stream
    /// yields [`StoreError::Unavailable`] and ends.
    pub watch_retry_for: Duration,
    /// HTTP/2 ping interval while a stream (a watch) is open, to notice a dead
    /// connection. It must stay above etcd's `--grpc-keepalive-min-time` (5 s by
    /// default), or etcd closes the connection for pinging too often.
    pub keep_alive_interval: Duration,
    /// How long an HTTP/2 ping may go unanswered before the connection is dropped.
    pub keep_alive_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(15),
            watch_retry_for: Duration::from_secs(30),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
        }
    }
}

/// What one etcd member says about itself, from [`EtcdStore::member_status`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// The endpoint that answered.
    pub endpoint: String,
    /// The member's id.
    pub member_id: u64,
    /// The id of the member it takes for the leader (0: none).
    pub leader_id: u64,
    /// The raft term it is in.
    pub raft_term: u64,
    /// etcd's version.
    pub version: String,
}

impl MemberStatus {
    /// Whether the answering member is the raft leader.
    pub fn is_leader(&self) -> bool {
        self.leader_id != 0 && self.member_id == self.leader_id
    }
}

/// Weft's store on an etcd v3 cluster (etcd 3.4 or later). Cheap to clone: clones share
/// one connection.
#[derive(Clone)]
pub struct EtcdStore {
    pub(crate) conn: Arc<Conn>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.conn.urls().collect::<Vec<_>>())
            .finish()
    }
}

impl EtcdStore {
    /// Connects to the first reachable of `endpoints` (`host:port` or
    /// `http://host:port`, all members of one cluster) with default options. Later
    /// failures move to the next endpoint.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore, StoreError> {
        Self::connect_with(endpoints, EtcdOptions::default()).await
    }

    /// [`connect`](Self::connect) with explicit timeouts.
    pub async fn connect_with(
        endpoints: &[String],
        options: EtcdOptions,
    ) -> Result<EtcdStore, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Invalid(
                "no etcd endpoint given: pass at least one host:port".into(),
            ));
        }
        let urls = endpoints
            .iter()
            .map(|e| parse_endpoint(e).map_err(|err| StoreError::Invalid(err.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let store = EtcdStore {
            conn: Arc::new(Conn::new(urls, options)?),
        };
        // Fail now, not at the first request, when no endpoint answers.
        store.revision().await?;
        Ok(store)
    }

    /// The endpoints this store was given, normalized to `http://host:port`.
    pub fn endpoints(&self) -> Vec<String> {
        self.conn.urls().map(str::to_owned).collect()
    }

    /// How many connections this store has made to etcd members: 1 after
    /// [`connect`](Self::connect), one more for every failover or reconnection.
    pub fn connects(&self) -> u64 {
        self.conn.connects()
    }

    /// The endpoint the connection currently goes to, if one is up.
    pub async fn endpoint_in_use(&self) -> Option<String> {
        self.conn.in_use().await
    }

    /// What the member in use says about itself and the cluster (its id, the
    /// leader's, the raft term, etcd's version): for failure tests and diagnostics.
    pub async fn member_status(&self) -> Result<MemberStatus, StoreError> {
        let resp = self
            .conn
            .unary(
                "the status query",
                Retry::Idempotent,
                |channel| async move {
                    MaintenanceClient::new(channel)
                        .status(request(pb::StatusRequest {}))
                        .await
                },
            )
            .await?
            .map_err(|status| answer_error("the status query", status))?;
        let header = resp.header.unwrap_or_default();
        Ok(MemberStatus {
            endpoint: self.conn.in_use().await.unwrap_or_default(),
            member_id: header.member_id,
            leader_id: resp.leader,
            raft_term: resp.raft_term,
            version: resp.version,
        })
    }

    pub(crate) async fn kv_range(
        &self,
        what: &str,
        req: pb::RangeRequest,
    ) -> Result<pb::RangeResponse, StoreError> {
        self.conn
            .unary(what, Retry::Idempotent, |channel| {
                let req = req.clone();
                async move { KvClient::new(channel).range(request(req)).await }
            })
            .await?
            .map_err(|status| answer_error(what, status))
    }

    pub(crate) async fn kv_txn(
        &self,
        what: &str,
        req: pb::TxnRequest,
    ) -> Result<pb::TxnResponse, StoreError> {
        self.conn
            .unary(what, Retry::Mutation, |channel| {
                let req = req.clone();
                async move { KvClient::new(channel).txn(request(req)).await }
            })
            .await?
            .map_err(|status| answer_error(what, status))
    }
}

/// An etcd revision as a store revision (etcd's are never negative).
pub(crate) fn revision(rev: i64) -> Revision {
    Revision::try_from(rev).unwrap_or(0)
}

/// A store revision as an etcd revision.
pub(crate) fn etcd_revision(rev: Revision) -> Result<i64, StoreError> {
    i64::try_from(rev).map_err(|_| {
        StoreError::Invalid(format!(
            "revision {rev} is beyond etcd's range (at most {})",
            i64::MAX
        ))
    })
}

/// The revision in a response header; etcd always sets it on KV answers.
pub(crate) fn header_revision(header: Option<pb::ResponseHeader>) -> Result<Revision, StoreError> {
    match header {
        Some(h) if h.revision > 0 => Ok(revision(h.revision)),
        _ => Err(StoreError::Unavailable(
            "etcd answered without a revision in its response header: is this an etcd v3 server?"
                .into(),
        )),
    }
}

/// A key from etcd as a string.
pub(crate) fn key_string(key: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(key).map_err(|e| {
        StoreError::Corrupt(format!(
            "etcd key {:?} is not UTF-8, but Weft's keys are strings: remove it or keep it outside Weft's prefixes",
            String::from_utf8_lossy(e.as_bytes())
        ))
    })
}

pub(crate) fn key_value(kv: mvccpb::KeyValue) -> Result<KeyValue, StoreError> {
    Ok(KeyValue {
        key: key_string(kv.key)?,
        value: kv.value,
        create_revision: revision(kv.create_revision),
        mod_revision: revision(kv.mod_revision),
    })
}

/// The end of the key range holding every key that starts with `prefix`, as etcd
/// computes it: the prefix with its last byte below 0xff incremented and the rest cut;
/// `[0]` ("no upper bound") when there is no such byte.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The `[key, range_end)` of everything under `prefix` (all keys for an empty prefix).
pub(crate) fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.as_bytes().to_vec(), prefix_end(prefix.as_bytes()))
    }
}

/// Refuses what etcd would refuse, before a round trip: empty keys, a key in two ops.
fn validate(txn: &Txn) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    for op in &txn.ops {
        let key = match op {
            Op::Put { key, .. } | Op::Delete { key } => key,
        };
        if key.is_empty() {
            return Err(StoreError::Invalid(
                "a transaction op has an empty key; every key needs at least one byte".into(),
            ));
        }
        if !seen.insert(key.as_str()) {
            return Err(StoreError::Invalid(format!(
                "key {key:?} appears in more than one op of the transaction; etcd allows one op per key, so merge them"
            )));
        }
    }
    for Compare::ModRevision { key, .. } in &txn.compares {
        if key.is_empty() {
            return Err(StoreError::Invalid(
                "a transaction compare has an empty key; every key needs at least one byte".into(),
            ));
        }
    }
    Ok(())
}

fn txn_request(txn: Txn) -> Result<pb::TxnRequest, StoreError> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    use pb::request_op::Request;
    let compare = txn
        .compares
        .into_iter()
        .map(|Compare::ModRevision { key, revision }| {
            Ok(pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Mod as i32,
                key: key.into_bytes(),
                range_end: Vec::new(),
                // etcd compares an absent key as mod_revision 0, which is the trait's
                // "absent".
                target_union: Some(TargetUnion::ModRevision(etcd_revision(revision)?)),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let success = txn
        .ops
        .into_iter()
        .map(|op| pb::RequestOp {
            request: Some(match op {
                Op::Put { key, value } => Request::RequestPut(pb::PutRequest {
                    key: key.into_bytes(),
                    value,
                    ..Default::default()
                }),
                Op::Delete { key } => Request::RequestDeleteRange(pb::DeleteRangeRequest {
                    key: key.into_bytes(),
                    ..Default::default()
                }),
            }),
        })
        .collect();
    Ok(pb::TxnRequest {
        compare,
        success,
        failure: Vec::new(),
    })
}

#[async_trait]
impl Store for EtcdStore {
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        validate(&txn)?;
        let resp = self.kv_txn("the transaction", txn_request(txn)?).await?;
        // etcd's header revision is the transaction's own revision when it changed
        // something, and the current one when it did not (no-op or failed compare).
        let revision = header_revision(resp.header)?;
        Ok(if resp.succeeded {
            TxnOutcome::Committed { revision }
        } else {
            TxnOutcome::Failed { revision }
        })
    }

    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError> {
        if key.is_empty() {
            return Err(StoreError::Invalid(
                "cannot get the empty key; every key needs at least one byte".into(),
            ));
        }
        let resp = self
            .kv_range(
                "the read",
                pb::RangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                },
            )
            .await?;
        let revision = header_revision(resp.header)?;
        let kv = resp.kvs.into_iter().next().map(key_value).transpose()?;
        Ok((kv, revision))
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        let (mut start, end) = prefix_range(&req.prefix);
        if let Some(after) = req.start_after {
            // The smallest key strictly greater than `after`.
            let mut next = after.into_bytes();
            next.push(0);
            start = start.max(next);
        }
        let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
        if end != [0] && start >= end {
            // Nothing can match; etcd still tells the revision.
            let revision = self.revision().await?;
            return Ok(RangeResponse {
                kvs: Vec::new(),
                revision,
                more: false,
            });
        }
        let resp = self
            .kv_range(
                "the range read",
                pb::RangeRequest {
                    key: start,
                    range_end: end,
                    limit,
                    ..Default::default()
                },
            )
            .await?;
        let revision = header_revision(resp.header)?;
        let kvs = resp
            .kvs
            .into_iter()
            .map(key_value)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RangeResponse {
            kvs,
            revision,
            more: resp.more,
        })
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        let (key, range_end) = prefix_range(prefix);
        watch::watch(Arc::clone(&self.conn), key, range_end, from_revision).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        // A linearizable count of one key: the cheapest read that carries the revision.
        let resp = self
            .kv_range(
                "the revision read",
                pb::RangeRequest {
                    key: vec![0],
                    count_only: true,
                    ..Default::default()
                },
            )
            .await?;
        header_revision(resp.header)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        // etcd keeps every revision after its compaction point whole, but drops the
        // deletes made at the point itself: compact etcd one revision earlier so that
        // a watch from `revision` replays that revision whole (see `watch.rs`).
        let current = self.revision().await?;
        if revision > current {
            return Err(StoreError::Invalid(format!(
                "cannot compact to revision {revision}: the current revision is {current}"
            )));
        }
        if revision <= 2 {
            // etcd starts at revision 1 with no transaction in it: nothing to forget.
            return Ok(());
        }
        let req = pb::CompactionRequest {
            revision: etcd_revision(revision - 1)?,
            // Watches from before `revision` fail as soon as etcd has applied the
            // compaction; freeing the space may finish later.
            physical: false,
        };
        let answer = self
            .conn
            .unary("the compaction", Retry::Idempotent, |channel| async move {
                KvClient::new(channel).compact(request(req)).await
            })
            .await?;
        match answer {
            Ok(_) => Ok(()),
            // Already compacted at least that far: nothing left to forget.
            Err(status)
                if status.code() == Code::OutOfRange && status.message().contains("compacted") =>
            {
                Ok(())
            }
            Err(status) => Err(answer_error("the compaction", status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_follow_etcd() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_end(b""), [0]);
        assert_eq!(prefix_range(""), (vec![0], vec![0]));
        // "é" is 0xc3 0xa9: the end of "x/é" is "x/\xc3\xaa".
        assert_eq!(prefix_range("x/é").1, b"x/\xc3\xaa");
    }

    #[test]
    fn malformed_txns_are_refused_before_etcd() {
        let bad = [
            Txn::new().put("", "v"),
            Txn::new().delete(""),
            Txn::new().when_mod_revision("", 0),
            Txn::new().put("k", "1").put("k", "2"),
            Txn::new().put("k", "1").delete("k"),
            Txn::new().delete("k").delete("k"),
        ];
        for txn in bad {
            assert!(
                matches!(validate(&txn), Err(StoreError::Invalid(_))),
                "{txn:?}"
            );
        }
        let good = Txn::new()
            .when_mod_revision("k", 3)
            .put("k", "1")
            .delete("k2");
        validate(&good).unwrap();
    }

    #[test]
    fn compares_and_ops_map_to_etcd_fields() {
        let req = txn_request(
            Txn::new()
                .when_mod_revision("a", 0)
                .when_mod_revision("b", 7)
                .put("a", "x")
                .delete("c"),
        )
        .unwrap();
        assert_eq!(req.compare.len(), 2);
        assert_eq!(
            req.compare[1].target_union,
            Some(pb::compare::TargetUnion::ModRevision(7))
        );
        assert_eq!(
            req.compare[0].target,
            pb::compare::CompareTarget::Mod as i32
        );
        assert_eq!(
            req.compare[0].result,
            pb::compare::CompareResult::Equal as i32
        );
        assert!(req.failure.is_empty());
        assert!(matches!(
            &req.success[1].request,
            Some(pb::request_op::Request::RequestDeleteRange(d)) if d.key == b"c" && d.range_end.is_empty()
        ));
        assert!(txn_request(Txn::new().when_mod_revision("a", u64::MAX)).is_err());
    }
}
