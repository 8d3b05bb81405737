//! Leases and a leader lock, for singletons among controller replicas (the BGP speaker,
//! housekeeping): whoever holds the lock key runs the singleton; when its lease ends the
//! key goes and another replica takes it.
//!
//! ```text
//!  campaign(key, id, ttl)
//!    grant lease ─► LeaseKeeper task: keep-alive every ttl/3, "lost" once the lease
//!    │              cannot be shown alive before its deadline
//!    └─ loop: txn  if create_revision(key) == 0 then put(key, id, lease) else get(key)
//!             held by another: watch key until it is deleted, try again
//!  LeaderGuard: monitor task watches the key; any change to it, or the keeper's
//!               "lost", flips `lost()`. Drop or resign() revokes the lease.
//! ```
//!
//! The lock is a plain compare on the key's create revision, not etcd's election
//! service: candidates are not queued fairly, which does not matter for a few replicas.
//! A holder learns that it lost the lock no later than its lease's deadline as measured
//! from the last keep-alive it *sent*, so it stops before etcd hands the key to another.
//! To fence writes, compare the key's revision in the same transaction:
//! `Txn::new().when_mod_revision(guard.key(), guard.revision())`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::{Code, Status};
use weft_store::{Event, Revision, Store, StoreError};

use crate::client::{Retry, answer_error, request};
use crate::pb::etcdserverpb as pb;
use crate::pb::etcdserverpb::lease_client::LeaseClient;
use crate::store::{EtcdStore, header_revision};

/// A lease granted by etcd: keys written with it are deleted when it expires or is
/// revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// etcd's lease id.
    pub id: i64,
    /// The time to live etcd granted (it may round up what was asked).
    pub ttl: Duration,
    /// When the grant was sent: unless revoked, the lease lives at least until
    /// `granted_at + ttl`.
    pub granted_at: Instant,
}

/// etcd's TTL in seconds; 0 or -1 mean the lease is gone.
fn ttl_duration(ttl: i64) -> Option<Duration> {
    u64::try_from(ttl)
        .ok()
        .filter(|&t| t > 0)
        .map(Duration::from_secs)
}

fn lease_not_found(status: &Status) -> bool {
    status.code() == Code::NotFound
}

impl EtcdStore {
    /// Grants a lease of at least `ttl` (whole seconds, at least one).
    pub async fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let secs = i64::try_from(ttl.as_secs_f64().ceil() as u64)
            .unwrap_or(i64::MAX)
            .max(1);
        let granted_at = Instant::now();
        // Granting twice after an ambiguous failure only leaves a lease nobody keeps
        // alive, which expires by itself.
        let resp = self
            .conn
            .unary("the lease grant", Retry::Idempotent, |channel| async move {
                LeaseClient::new(channel)
                    .lease_grant(request(pb::LeaseGrantRequest { ttl: secs, id: 0 }))
                    .await
            })
            .await?
            .map_err(|status| answer_error("the lease grant", status))?;
        if !resp.error.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "etcd refused a lease of {secs} s: {}",
                resp.error
            )));
        }
        let ttl = ttl_duration(resp.ttl).ok_or_else(|| {
            StoreError::Unavailable(format!(
                "etcd granted lease {:x} with a TTL of {} s",
                resp.id, resp.ttl
            ))
        })?;
        Ok(Lease {
            id: resp.id,
            ttl,
            granted_at,
        })
    }

    /// Renews a lease once. Returns its fresh TTL, or `None` if it has expired or was
    /// revoked.
    pub async fn keep_alive_once(&self, lease_id: i64) -> Result<Option<Duration>, StoreError> {
        let resp = self
            .conn
            .unary(
                "the lease keep-alive",
                Retry::Idempotent,
                |channel| async move {
                    let mut responses = LeaseClient::new(channel)
                        .lease_keep_alive(request(futures::stream::once(async move {
                            pb::LeaseKeepAliveRequest { id: lease_id }
                        })))
                        .await?
                        .into_inner();
                    match responses.message().await? {
                        Some(resp) => Ok(tonic::Response::new(resp)),
                        None => Err(Status::unavailable(
                            "etcd ended the keep-alive stream without an answer",
                        )),
                    }
                },
            )
            .await?;
        match resp {
            Ok(resp) => Ok(ttl_duration(resp.ttl)),
            Err(status) if lease_not_found(&status) => Ok(None),
            Err(status) => Err(answer_error("the lease keep-alive", status)),
        }
    }

    /// The remaining TTL of a lease, or `None` if it has expired or was revoked.
    pub async fn lease_time_to_live(&self, lease_id: i64) -> Result<Option<Duration>, StoreError> {
        let resp = self
            .conn
            .unary("the lease query", Retry::Idempotent, |channel| async move {
                LeaseClient::new(channel)
                    .lease_time_to_live(request(pb::LeaseTimeToLiveRequest {
                        id: lease_id,
                        keys: false,
                    }))
                    .await
            })
            .await?;
        match resp {
            Ok(resp) => Ok(ttl_duration(resp.ttl)),
            Err(status) if lease_not_found(&status) => Ok(None),
            Err(status) => Err(answer_error("the lease query", status)),
        }
    }

    /// Revokes a lease, deleting its keys. Revoking an unknown or expired lease is not
    /// an error.
    pub async fn revoke_lease(&self, lease_id: i64) -> Result<(), StoreError> {
        let resp = self
            .conn
            .unary(
                "the lease revoke",
                Retry::Idempotent,
                |channel| async move {
                    LeaseClient::new(channel)
                        .lease_revoke(request(pb::LeaseRevokeRequest { id: lease_id }))
                        .await
                },
            )
            .await?;
        match resp {
            Ok(_) => Ok(()),
            Err(status) if lease_not_found(&status) => Ok(()),
            Err(status) => Err(answer_error("the lease revoke", status)),
        }
    }

    /// Writes `key` attached to a lease (deleted when the lease ends), unconditionally.
    /// Returns the revision of the write.
    pub async fn put_with_lease(
        &self,
        key: &str,
        value: impl Into<Vec<u8>>,
        lease_id: i64,
    ) -> Result<Revision, StoreError> {
        if key.is_empty() {
            return Err(StoreError::Invalid(
                "cannot write the empty key; every key needs at least one byte".into(),
            ));
        }
        let put = pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.into(),
                lease: lease_id,
                ..Default::default()
            })),
        };
        let resp = self
            .kv_txn(
                "the leased put",
                pb::TxnRequest {
                    compare: Vec::new(),
                    success: vec![put],
                    failure: Vec::new(),
                },
            )
            .await?;
        header_revision(resp.header)
    }

    /// Keeps a lease alive in the background until the returned keeper is dropped.
    pub fn keep_lease_alive(&self, lease: Lease) -> LeaseKeeper {
        let (lost_tx, lost) = watch::channel(false);
        let store = self.clone();
        let task = tokio::spawn(async move {
            let mut deadline = lease.granted_at + lease.ttl;
            let mut wait = Duration::ZERO;
            loop {
                tokio::time::sleep(wait).await;
                let sent = Instant::now();
                let left = deadline.saturating_duration_since(sent);
                if left.is_zero() {
                    tracing::warn!(lease = lease.id, "etcd lease could not be renewed in time");
                    break;
                }
                match tokio::time::timeout(left, store.keep_alive_once(lease.id)).await {
                    Ok(Ok(Some(ttl))) => {
                        deadline = sent + ttl;
                        wait = ttl / 3;
                    }
                    Ok(Ok(None)) => {
                        tracing::warn!(lease = lease.id, "etcd lease expired or was revoked");
                        break;
                    }
                    Ok(Err(err)) => {
                        tracing::debug!(lease = lease.id, %err, "etcd lease keep-alive failed");
                        wait = Duration::from_millis(250);
                    }
                    Err(_) => wait = Duration::ZERO,
                }
            }
            let _ = lost_tx.send(true);
        });
        LeaseKeeper { lease, lost, task }
    }

    /// Campaigns for the lock `key` as `id` (stored as the key's value) with a lease of
    /// `ttl`. Resolves once this candidate holds the key; waits while another does.
    pub async fn campaign(
        &self,
        key: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<LeaderGuard, StoreError> {
        if key.is_empty() {
            return Err(StoreError::Invalid(
                "cannot campaign on the empty key; name the singleton".into(),
            ));
        }
        let lease = self.grant_lease(ttl).await?;
        let keeper = self.keep_lease_alive(lease);
        match self.acquire(key, id, &keeper).await {
            Ok(revision) => Ok(LeaderGuard::new(self.clone(), key, id, keeper, revision)),
            Err(err) => {
                drop(keeper);
                // The put may have applied before an ambiguous failure: let the key go.
                let _ = self.revoke_lease(lease.id).await;
                Err(err)
            }
        }
    }

    /// Takes `key` with the keeper's lease once nobody holds it; returns the revision
    /// of the put.
    async fn acquire(
        &self,
        key: &str,
        id: &str,
        keeper: &LeaseKeeper,
    ) -> Result<Revision, StoreError> {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        use pb::request_op::Request;
        let lease = keeper.lease();
        let mut lost = keeper.subscribe();
        loop {
            if keeper.is_lost() {
                return Err(lease_lost(key, lease));
            }
            let txn = pb::TxnRequest {
                compare: vec![pb::Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Create as i32,
                    key: key.as_bytes().to_vec(),
                    range_end: Vec::new(),
                    target_union: Some(TargetUnion::CreateRevision(0)),
                }],
                success: vec![pb::RequestOp {
                    request: Some(Request::RequestPut(pb::PutRequest {
                        key: key.as_bytes().to_vec(),
                        value: id.as_bytes().to_vec(),
                        lease: lease.id,
                        ..Default::default()
                    })),
                }],
                failure: vec![pb::RequestOp {
                    request: Some(Request::RequestRange(pb::RangeRequest {
                        key: key.as_bytes().to_vec(),
                        ..Default::default()
                    })),
                }],
            };
            let resp = self.kv_txn("the campaign", txn).await?;
            let rev = header_revision(resp.header)?;
            if resp.succeeded {
                return Ok(rev);
            }
            let holder = resp.responses.into_iter().find_map(|r| match r.response {
                Some(pb::response_op::Response::ResponseRange(range)) => {
                    range.kvs.into_iter().next()
                }
                _ => None,
            });
            let Some(holder) = holder else {
                // Deleted between the compare and the read: try again at once.
                continue;
            };
            tracing::debug!(
                key,
                holder = %String::from_utf8_lossy(&holder.value),
                "lock held, waiting for it to be released"
            );
            // Wait for the holder's key to be deleted (lease expiry, revoke, resign).
            let mut changes = crate::watch::watch(
                std::sync::Arc::clone(&self.conn),
                key.as_bytes().to_vec(),
                Vec::new(),
                rev + 1,
            )
            .await?;
            loop {
                tokio::select! {
                    () = until_lost(&mut lost) => return Err(lease_lost(key, lease)),
                    item = changes.next() => match item {
                        Some(Ok(batch)) => {
                            if batch.events.iter().any(|e| matches!(e, Event::Delete { .. })) {
                                break;
                            }
                        }
                        // A broken or compacted watch: read the key again.
                        Some(Err(_)) | None => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            break;
                        }
                    },
                }
            }
        }
    }
}

/// Resolves when a "lost" flag turns true (or its sender is gone).
async fn until_lost(lost: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not across an await.
    let _ = lost.wait_for(|l| *l).await;
}

fn lease_lost(key: &str, lease: Lease) -> StoreError {
    StoreError::Unavailable(format!(
        "lease {:x} for lock {key:?} could not be kept alive: etcd was unreachable for its TTL of {:?}",
        lease.id, lease.ttl
    ))
}

/// Keeps a lease alive from a background task; stops (and lets the lease expire) when
/// dropped.
#[derive(Debug)]
pub struct LeaseKeeper {
    lease: Lease,
    lost: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// The lease kept alive.
    pub fn lease(&self) -> Lease {
        self.lease
    }
    /// Whether the lease is gone (expired, revoked, or not renewed before its deadline).
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }
    /// Resolves when the lease is gone.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|l| *l).await;
    }
    /// A receiver that turns `true` when the lease is gone.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Proof of holding a lock taken by [`EtcdStore::campaign`]. Dropping it, or
/// [`resign`](Self::resign), releases the lock.
#[derive(Debug)]
pub struct LeaderGuard {
    store: EtcdStore,
    key: String,
    id: String,
    revision: Revision,
    lease: Lease,
    keeper: Option<LeaseKeeper>,
    lost: watch::Receiver<bool>,
    monitor: JoinHandle<()>,
}

impl LeaderGuard {
    fn new(store: EtcdStore, key: &str, id: &str, keeper: LeaseKeeper, revision: Revision) -> Self {
        let (lost_tx, lost) = watch::channel(false);
        let monitor = tokio::spawn(monitor(
            store.clone(),
            key.to_owned(),
            revision,
            keeper.subscribe(),
            lost_tx,
        ));
        Self {
            store,
            key: key.to_owned(),
            id: id.to_owned(),
            revision,
            lease: keeper.lease(),
            keeper: Some(keeper),
            lost,
            monitor,
        }
    }
    /// The lock key.
    pub fn key(&self) -> &str {
        &self.key
    }
    /// This candidate's id, the key's value.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The revision at which this candidate took the key (its create and mod revision).
    /// Writes that only the leader may make compare it:
    /// `Txn::new().when_mod_revision(guard.key(), guard.revision())`.
    pub fn revision(&self) -> Revision {
        self.revision
    }
    /// The lease holding the key.
    pub fn lease(&self) -> Lease {
        self.lease
    }
    /// Whether the lock was lost: the key changed or went, or the lease could not be
    /// kept alive. A leader that lost the lock must stop acting as one.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }
    /// Resolves when the lock is lost.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|l| *l).await;
    }
    /// A receiver that turns `true` when the lock is lost.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }
    /// Gives the lock up now: revokes the lease, which deletes the key.
    pub async fn resign(mut self) -> Result<(), StoreError> {
        self.monitor.abort();
        self.keeper = None;
        self.store.revoke_lease(self.lease.id).await
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        self.monitor.abort();
        // Still holding (not resigned): release the key for the next candidate now
        // rather than after the TTL, if a runtime is there to do it.
        if self.keeper.take().is_some()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (store, lease) = (self.store.clone(), self.lease.id);
            runtime.spawn(async move {
                if let Err(err) = store.revoke_lease(lease).await {
                    tracing::warn!(lease, %err, "could not revoke a dropped leader's lease; it expires by itself");
                }
            });
        }
    }
}

/// Flips `lost` when the lock key changes or goes, or the lease is lost.
async fn monitor(
    store: EtcdStore,
    key: String,
    held_at: Revision,
    mut lease_lost: watch::Receiver<bool>,
    lost: watch::Sender<bool>,
) {
    let mut from = held_at + 1;
    'watch: loop {
        let changes = crate::watch::watch(
            std::sync::Arc::clone(&store.conn),
            key.as_bytes().to_vec(),
            Vec::new(),
            from,
        )
        .await;
        if let Ok(mut changes) = changes {
            tokio::select! {
                () = until_lost(&mut lease_lost) => break 'watch,
                item = changes.next() => {
                    // Nobody else may write the key while we hold it: any change
                    // means it is no longer ours.
                    if let Some(Ok(_)) = item {
                        break 'watch;
                    }
                }
            }
        }
        // The watch failed: is the key still ours?
        match store.get(&key).await {
            Ok((Some(kv), now)) if kv.mod_revision == held_at => from = now + 1,
            Ok(_) | Err(_) => break,
        }
        if *lease_lost.borrow() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!(key, "leadership lost");
    let _ = lost.send(true);
}
