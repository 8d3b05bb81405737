//! Enrolled hosts and join tokens: what the store keeps, what the controller holds in memory
//! (live connections, last seen, reports), enrolment, revocation and removal.
//!
//! Store layout (JSON values):
//! - `southbound/join-tokens/<id>`: a [`JoinTokenRecord`], the secret only as a SHA-256;
//! - `southbound/hosts/<name>`: a [`HostRecord`], the serial of the one certificate in force;
//! - `southbound/seen/<name>`: when this or another replica last saw the host (Unix seconds).
//!
//! Every replica keeps the host records in memory, loaded at start and followed by a store
//! watch, because the TLS handshake checks them synchronously; a host revoked through any
//! replica loses its connections on all of them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{info, warn};
use weft_southbound::join::{JoinToken, hex};
use weft_southbound::validate_host_name;
use weft_southbound::writes::PeerLiveness;
use weft_store::{Event, RangeRequest, Store, StoreError, Txn, TxnOutcome};

use super::SouthboundError;
use super::ca::{CertificateAuthority, Issued};

/// Prefix of join tokens.
pub const JOIN_TOKENS: &str = "southbound/join-tokens/";
/// Prefix of host records.
pub const HOSTS: &str = "southbound/hosts/";
/// Prefix of last-seen times.
pub const SEEN: &str = "southbound/seen/";

/// A stored join token (never holds the secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenRecord {
    /// The public id.
    pub id: String,
    /// Hex SHA-256 of the secret; empty in listings.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret_sha256: String,
    /// The only host name this token may enrol, if bound to one.
    pub host: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// When it was used, if it was.
    pub used_at: Option<u64>,
    /// The host it enrolled.
    pub used_by: Option<String>,
}

/// A stored host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host name (the certificate's CN and DNS SAN).
    pub name: String,
    /// Serial (hex) of the certificate in force; any other certificate for the name is refused.
    pub serial: String,
    /// Its expiry, Unix seconds.
    pub not_after: u64,
    /// Enrolment time, Unix seconds.
    pub enrolled_at: u64,
    /// The join token used.
    pub token_id: String,
    /// Set when revoked: the host's certificate is refused from then on.
    pub revoked_at: Option<u64>,
}

/// One host as listed by the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostInfo {
    /// The host name.
    pub name: String,
    /// `connected`, `disconnected` or `revoked`.
    pub state: &'static str,
    /// Open sessions on this replica.
    pub sessions: usize,
    /// Address of the last session seen by this replica.
    pub remote: Option<String>,
    /// Last seen (Unix seconds), by any replica that recorded it.
    pub last_seen: Option<u64>,
    /// Enrolment time (Unix seconds).
    pub enrolled_at: u64,
    /// Serial of the certificate in force.
    pub cert_serial: String,
    /// Expiry of that certificate (Unix seconds).
    pub cert_not_after: u64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<u64>,
    /// Revision the host last said it applied.
    pub applied_revision: u64,
    /// Reads and writes of this host refused since this replica started.
    pub refusals: u64,
    /// TLS bytes received from the host by this replica.
    pub bytes_received: u64,
    /// TLS bytes sent to the host by this replica.
    pub bytes_sent: u64,
    /// Learned bindings the host holds.
    pub learned_bindings: usize,
    /// Last liveness report.
    pub liveness: Vec<PeerLivenessInfo>,
    /// Last counters.
    pub counters: BTreeMap<String, u64>,
}

/// Liveness of one peer, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerLivenessInfo {
    /// The peer host.
    pub peer: String,
    /// Reachable.
    pub up: bool,
    /// Round trip, microseconds.
    pub rtt_micros: u64,
}

/// Why an enrolment was refused (the message goes to the enrolling host and the log).
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The token or the name is not acceptable.
    #[error("{0}")]
    Refused(String),
    /// The store or the CA failed.
    #[error(transparent)]
    Internal(#[from] SouthboundError),
}

impl From<StoreError> for EnrollError {
    fn from(e: StoreError) -> Self {
        EnrollError::Internal(e.into())
    }
}

/// Bytes moved on a host's TLS connections after the handshake (TLS records).
#[derive(Debug, Default)]
pub struct ByteCounters {
    /// Bytes received from the host.
    pub received: AtomicU64,
    /// Bytes sent to the host.
    pub sent: AtomicU64,
}

/// A registered connection.
pub struct OpenedConn {
    /// Its id in the registry.
    pub id: u64,
    /// Flips to true when the controller closes it.
    pub closed: watch::Receiver<bool>,
    /// The host's byte counters (none without a certificate).
    pub bytes: Option<Arc<ByteCounters>>,
}

#[derive(Default)]
struct Runtime {
    bytes: Arc<ByteCounters>,
    sessions: usize,
    remote: Option<SocketAddr>,
    last_seen: Option<u64>,
    applied_revision: u64,
    refusals: u64,
    liveness: Vec<PeerLiveness>,
    counters: BTreeMap<String, u64>,
}

struct Conn {
    host: Option<String>,
    serial: Option<String>,
    close: watch::Sender<bool>,
}

#[derive(Default)]
struct Inner {
    hosts: HashMap<String, HostRecord>,
    runtime: HashMap<String, Runtime>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
}

/// Hosts, tokens and live connections.
pub struct Registry {
    store: Arc<dyn Store>,
    wire: Arc<ByteCounters>,
    inner: Mutex<Inner>,
}

fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes * 2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(bytes * 2);
    out
}

impl Registry {
    /// Loads hosts and last-seen times from the store. Returns the registry and the store
    /// revision it reflects (watch from the next one).
    pub async fn load(store: Arc<dyn Store>) -> Result<(Arc<Self>, u64), SouthboundError> {
        let reg = Arc::new(Registry {
            store,
            wire: Arc::default(),
            inner: Mutex::new(Inner::default()),
        });
        let revision = reg.reload().await?;
        Ok((reg, revision))
    }

    async fn reload(&self) -> Result<u64, SouthboundError> {
        let hosts = self
            .store
            .range(RangeRequest {
                prefix: HOSTS.into(),
                ..Default::default()
            })
            .await?;
        let seen = self
            .store
            .range(RangeRequest {
                prefix: SEEN.into(),
                ..Default::default()
            })
            .await?;
        let mut records = HashMap::new();
        for kv in hosts.kvs {
            match serde_json::from_slice::<HostRecord>(&kv.value) {
                Ok(r) => {
                    records.insert(r.name.clone(), r);
                }
                Err(e) => warn!(key = %kv.key, error = %e, "skipping unreadable host record"),
            }
        }
        let mut inner = self.inner.lock().expect("registry lock");
        let gone: Vec<String> = inner
            .hosts
            .keys()
            .filter(|h| !records.contains_key(*h))
            .cloned()
            .collect();
        for host in gone {
            Self::close_host(&mut inner, &host, None);
        }
        for r in records.into_values() {
            Self::apply_record(&mut inner, r);
        }
        for kv in seen.kvs {
            if let (Some(host), Ok(s)) = (
                kv.key.strip_prefix(SEEN),
                std::str::from_utf8(&kv.value).map(|s| s.parse::<u64>()),
            ) && let Ok(t) = s
            {
                let rt = inner.runtime.entry(host.to_string()).or_default();
                rt.last_seen = rt.last_seen.max(Some(t));
            }
        }
        Ok(hosts.revision.max(seen.revision))
    }

    /// Follows host records written by any replica until the store closes.
    pub async fn follow(self: Arc<Self>, mut from: u64) {
        loop {
            let mut stream = match self.store.watch(HOSTS, from + 1).await {
                Ok(s) => s,
                Err(StoreError::Compacted { .. }) => {
                    match self.reload().await {
                        Ok(r) => from = r,
                        Err(e) => {
                            warn!(error = %e, "reloading host records failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    continue;
                }
                Err(StoreError::Closed) => return,
                Err(e) => {
                    warn!(error = %e, "watching host records failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(batch) = stream.next().await {
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        warn!(error = %e, "host record watch ended; restarting it");
                        break;
                    }
                };
                from = batch.revision;
                let mut inner = self.inner.lock().expect("registry lock");
                for ev in batch.events {
                    match ev {
                        Event::Put(kv) => {
                            if let Ok(r) = serde_json::from_slice::<HostRecord>(&kv.value) {
                                Self::apply_record(&mut inner, r);
                            }
                        }
                        Event::Delete { key, .. } => {
                            if let Some(host) = key.strip_prefix(HOSTS) {
                                let host = host.to_string();
                                inner.hosts.remove(&host);
                                Self::close_host(&mut inner, &host, None);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Takes a record in, closing connections it no longer allows.
    fn apply_record(inner: &mut Inner, r: HostRecord) {
        let name = r.name.clone();
        let keep = if r.revoked_at.is_some() {
            None
        } else {
            Some(r.serial.clone())
        };
        inner.hosts.insert(name.clone(), r);
        Self::close_host(inner, &name, keep.as_deref());
    }

    /// Closes the host's connections, except those with serial `keep`.
    fn close_host(inner: &mut Inner, host: &str, keep: Option<&str>) {
        for c in inner.conns.values() {
            if c.host.as_deref() == Some(host) && c.serial.as_deref() != keep {
                warn!(
                    host,
                    "closing the connection of a revoked or removed certificate"
                );
                c.close.send_replace(true);
            }
        }
    }

    /// TCP bytes of every southbound connection of this replica, TLS handshakes and refused
    /// connections included.
    pub fn wire_bytes(&self) -> Arc<ByteCounters> {
        self.wire.clone()
    }

    /// Whether a certificate `(name, serial)` may connect now. Checked in the handshake and
    /// again once the connection is registered (TLS 1.3 resumption skips the verifier).
    pub fn check_cert(&self, name: &str, serial: &str) -> Result<(), String> {
        let inner = self.inner.lock().expect("registry lock");
        match inner.hosts.get(name) {
            None => Err(format!(
                "host {name} is not enrolled (removed, or never enrolled)"
            )),
            Some(r) if r.revoked_at.is_some() => Err(format!("host {name} was revoked")),
            Some(r) if r.serial != serial => Err(format!(
                "certificate {serial} of host {name} was replaced by {}; enrol again",
                r.serial
            )),
            // Resumed TLS sessions skip the chain check, so expiry is checked here as well.
            Some(r) if super::service::now_unix() >= r.not_after => Err(format!(
                "the certificate of host {name} expired at {} (Unix time); enrol again",
                r.not_after
            )),
            Some(_) => Ok(()),
        }
    }

    /// Registers a connection; returns its id, the signal that closes it and the host's byte
    /// counters. Refused when the host already has `max_per_host` connections.
    pub fn connection_opened(
        &self,
        host: Option<&str>,
        serial: Option<&str>,
        max_per_host: usize,
    ) -> Result<OpenedConn, String> {
        let (tx, rx) = watch::channel(false);
        let mut inner = self.inner.lock().expect("registry lock");
        if let Some(h) = host {
            let open = inner
                .conns
                .values()
                .filter(|c| c.host.as_deref() == Some(h))
                .count();
            if open >= max_per_host {
                return Err(format!(
                    "host {h} already has {open} connections open (limit {max_per_host})"
                ));
            }
        }
        let bytes = host.map(|h| {
            inner
                .runtime
                .entry(h.to_string())
                .or_default()
                .bytes
                .clone()
        });
        inner.next_conn += 1;
        let id = inner.next_conn;
        inner.conns.insert(
            id,
            Conn {
                host: host.map(str::to_string),
                serial: serial.map(str::to_string),
                close: tx,
            },
        );
        Ok(OpenedConn {
            id,
            closed: rx,
            bytes,
        })
    }

    /// Closes one connection.
    pub fn close(&self, id: u64) {
        if let Some(c) = self.inner.lock().expect("registry lock").conns.get(&id) {
            c.close.send_replace(true);
        }
    }

    /// Forgets a connection.
    pub fn connection_closed(&self, id: u64) {
        self.inner.lock().expect("registry lock").conns.remove(&id);
    }

    /// Closes every connection (controller shutdown).
    pub fn close_all(&self) {
        let inner = self.inner.lock().expect("registry lock");
        for c in inner.conns.values() {
            c.close.send_replace(true);
        }
    }

    /// Open TLS connections (all, with or without a host).
    pub fn connection_count(&self) -> usize {
        self.inner.lock().expect("registry lock").conns.len()
    }

    /// A session of `host` started from `remote`.
    /// Refused when the host already has `max` sessions open on this replica.
    pub fn session_started(
        &self,
        host: &str,
        remote: Option<SocketAddr>,
        now_unix: u64,
        max: usize,
    ) -> Result<(), String> {
        let mut inner = self.inner.lock().expect("registry lock");
        let rt = inner.runtime.entry(host.to_string()).or_default();
        if rt.sessions >= max {
            return Err(format!(
                "host {host} already has {} sessions open (limit {max}); close the old ones",
                rt.sessions
            ));
        }
        rt.sessions += 1;
        rt.remote = remote.or(rt.remote);
        rt.last_seen = Some(now_unix);
        Ok(())
    }

    /// A session of `host` ended.
    pub async fn session_ended(&self, host: &str, now_unix: u64) {
        {
            let mut inner = self.inner.lock().expect("registry lock");
            let rt = inner.runtime.entry(host.to_string()).or_default();
            rt.sessions = rt.sessions.saturating_sub(1);
            rt.last_seen = Some(now_unix);
        }
        // Best effort: a replica that cannot write it only loses a timestamp.
        let _ = self
            .store
            .txn(Txn::new().put(format!("{SEEN}{host}"), now_unix.to_string()))
            .await;
    }

    /// The host sent something.
    pub fn touch(&self, host: &str, now_unix: u64, applied_revision: u64) {
        let mut inner = self.inner.lock().expect("registry lock");
        let rt = inner.runtime.entry(host.to_string()).or_default();
        rt.last_seen = Some(now_unix);
        rt.applied_revision = rt.applied_revision.max(applied_revision);
    }

    /// Counts a refusal against the host.
    pub fn refused(&self, host: &str) {
        let mut inner = self.inner.lock().expect("registry lock");
        inner.runtime.entry(host.to_string()).or_default().refusals += 1;
    }

    /// Stores the host's latest liveness report.
    pub fn set_liveness(&self, host: &str, peers: Vec<PeerLiveness>) {
        let mut inner = self.inner.lock().expect("registry lock");
        inner.runtime.entry(host.to_string()).or_default().liveness = peers;
    }

    /// Stores the host's latest counters (the whole set, bounded by the message limit).
    pub fn set_counters(&self, host: &str, counters: Vec<(String, u64)>) {
        let mut inner = self.inner.lock().expect("registry lock");
        inner.runtime.entry(host.to_string()).or_default().counters =
            counters.into_iter().collect();
    }

    /// Every enrolled host with its state; `bindings` counts learned bindings per host.
    pub fn list(&self, bindings: impl Fn(&str) -> usize) -> Vec<HostInfo> {
        let inner = self.inner.lock().expect("registry lock");
        let mut out: Vec<HostInfo> = inner
            .hosts
            .values()
            .map(|r| {
                let rt = inner.runtime.get(&r.name);
                let sessions = rt.map_or(0, |rt| rt.sessions);
                HostInfo {
                    name: r.name.clone(),
                    state: if r.revoked_at.is_some() {
                        "revoked"
                    } else if sessions > 0 {
                        "connected"
                    } else {
                        "disconnected"
                    },
                    sessions,
                    remote: rt.and_then(|rt| rt.remote).map(|a| a.to_string()),
                    last_seen: rt.and_then(|rt| rt.last_seen),
                    enrolled_at: r.enrolled_at,
                    cert_serial: r.serial.clone(),
                    cert_not_after: r.not_after,
                    revoked_at: r.revoked_at,
                    applied_revision: rt.map_or(0, |rt| rt.applied_revision),
                    refusals: rt.map_or(0, |rt| rt.refusals),
                    bytes_received: rt.map_or(0, |rt| rt.bytes.received.load(Ordering::Relaxed)),
                    bytes_sent: rt.map_or(0, |rt| rt.bytes.sent.load(Ordering::Relaxed)),
                    learned_bindings: bindings(&r.name),
                    liveness: rt
                        .map(|rt| {
                            rt.liveness
                                .iter()
                                .map(|p| PeerLivenessInfo {
                                    peer: p.peer.clone(),
                                    up: p.up,
                                    rtt_micros: p.rtt_micros,
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    counters: rt.map(|rt| rt.counters.clone()).unwrap_or_default(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Creates a join token valid for `ttl`, optionally bound to one host name. Returns the
    /// record and the token text (shown once).
    pub async fn create_join_token(
        &self,
        ca: &CertificateAuthority,
        host: Option<String>,
        ttl: Duration,
        description: String,
        now_unix: u64,
    ) -> Result<(JoinTokenRecord, String), SouthboundError> {
        if let Some(h) = &host {
            validate_host_name(h).map_err(|e| SouthboundError::Invalid(e.to_string()))?;
        }
        if ttl.is_zero() || ttl > Duration::from_secs(30 * 86_400) {
            return Err(SouthboundError::Invalid(format!(
                "join token lifetime {}s is out of range: give 1s to 30 days",
                ttl.as_secs()
            )));
        }
        let token = JoinToken {
            ca_sha256: ca.sha256(),
            id: random_hex(8),
            secret: random_hex(20),
        };
        let record = JoinTokenRecord {
            id: token.id.clone(),
            secret_sha256: sha256_hex(&token.secret),
            host,
            description,
            created_at: now_unix,
            expires_at: now_unix + ttl.as_secs(),
            used_at: None,
            used_by: None,
        };
        let key = format!("{JOIN_TOKENS}{}", token.id);
        let txn = Txn::new().when_mod_revision(&key, 0).put(
            &key,
            serde_json::to_vec(&record).expect("records serialize"),
        );
        match self.store.txn(txn).await? {
            TxnOutcome::Committed { .. } => Ok((record, token.to_string())),
            TxnOutcome::Failed { .. } => Err(SouthboundError::Invalid(
                "join token id collision; try again".into(),
            )),
        }
    }

    /// Join tokens, without their hashes.
    pub async fn list_join_tokens(&self) -> Result<Vec<JoinTokenRecord>, SouthboundError> {
        let r = self
            .store
            .range(RangeRequest {
                prefix: JOIN_TOKENS.into(),
                ..Default::default()
            })
            .await?;
        Ok(r.kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<JoinTokenRecord>(&kv.value).ok())
            .map(|mut t| {
                t.secret_sha256.clear();
                t
            })
            .collect())
    }

    /// Deletes a join token; false if it did not exist.
    pub async fn delete_join_token(&self, id: &str) -> Result<bool, SouthboundError> {
        let key = format!("{JOIN_TOKENS}{id}");
        let (kv, _) = self.store.get(&key).await?;
        if kv.is_none() {
            return Ok(false);
        }
        self.store.txn(Txn::new().delete(key)).await?;
        Ok(true)
    }

    /// Trades a join token credential and a CSR for a host certificate.
    pub async fn enroll(
        &self,
        ca: &CertificateAuthority,
        credential: &str,
        host: &str,
        csr_der: &[u8],
        validity: Duration,
        now_unix: u64,
    ) -> Result<Issued, EnrollError> {
        validate_host_name(host).map_err(|e| EnrollError::Invalid(e.to_string()))?;
        let unknown = || {
            EnrollError::Refused(
                "unknown or deleted join token; ask an administrator for a new one (`weft host token create`)"
                    .into(),
            )
        };
        let (id, secret) = JoinToken::split_credential(credential).ok_or_else(unknown)?;
        let token_key = format!("{JOIN_TOKENS}{id}");
        let (kv, _) = self.store.get(&token_key).await?;
        let kv = kv.ok_or_else(unknown)?;
        let mut token: JoinTokenRecord =
            serde_json::from_slice(&kv.value).map_err(|_| unknown())?;
        if !constant_time_eq(
            sha256_hex(secret).as_bytes(),
            token.secret_sha256.as_bytes(),
        ) {
            return Err(unknown());
        }
        if let Some(at) = token.used_at {
            return Err(EnrollError::Refused(format!(
                "join token {id} was already used at {at} (Unix time) to enrol {}; a join token works once: create a new one",
                token.used_by.as_deref().unwrap_or("?")
            )));
        }
        if now_unix >= token.expires_at {
            return Err(EnrollError::Refused(format!(
                "join token {id} expired at {} (Unix time); create a new one",
                token.expires_at
            )));
        }
        if let Some(bound) = &token.host
            && bound != host
        {
            return Err(EnrollError::Refused(format!(
                "join token {id} is for host {bound}, not {host}"
            )));
        }
        let host_key = format!("{HOSTS}{host}");
        let (existing, _) = self.store.get(&host_key).await?;
        let host_rev = existing.as_ref().map_or(0, |kv| kv.mod_revision);
        if let Some(kv) = &existing
            && let Ok(r) = serde_json::from_slice::<HostRecord>(&kv.value)
            && r.revoked_at.is_none()
            && token.host.as_deref() != Some(host)
        {
            return Err(EnrollError::Refused(format!(
                "host {host} is already enrolled; to replace its certificate use a join token created for that host name, or remove the host first"
            )));
        }
        let issued = ca.issue_host(host, csr_der, now_unix, validity)?;
        token.used_at = Some(now_unix);
        token.used_by = Some(host.to_string());
        let record = HostRecord {
            name: host.to_string(),
            serial: issued.serial.clone(),
            not_after: issued.not_after,
            enrolled_at: now_unix,
            token_id: id.to_string(),
            revoked_at: None,
        };
        // One transaction: the token is spent exactly when the host record is written.
        let txn = Txn::new()
            .when_mod_revision(&token_key, kv.mod_revision)
            .when_mod_revision(&host_key, host_rev)
            .put(
                &token_key,
                serde_json::to_vec(&token).expect("records serialize"),
            )
            .put(
                &host_key,
                serde_json::to_vec(&record).expect("records serialize"),
            );
        match self.store.txn(txn).await? {
            TxnOutcome::Committed { .. } => {
                let mut inner = self.inner.lock().expect("registry lock");
                Self::apply_record(&mut inner, record);
                info!(host, token = id, serial = %issued.serial, "host enrolled");
                Ok(issued)
            }
            TxnOutcome::Failed { .. } => Err(EnrollError::Refused(format!(
                "join token {id} or host {host} changed during enrolment (used concurrently?); try again with a new token"
            ))),
        }
    }

    /// Revokes a host's certificate: its connections close now and it is refused from then
    /// on. False if the host is unknown.
    pub async fn revoke(&self, host: &str, now_unix: u64) -> Result<bool, SouthboundError> {
        let key = format!("{HOSTS}{host}");
        for _ in 0..5 {
            let (kv, _) = self.store.get(&key).await?;
            let Some(kv) = kv else { return Ok(false) };
            let mut r: HostRecord = serde_json::from_slice(&kv.value)
                .map_err(|e| SouthboundError::Invalid(format!("host record {key}: {e}")))?;
            if r.revoked_at.is_none() {
                r.revoked_at = Some(now_unix);
            }
            let txn = Txn::new()
                .when_mod_revision(&key, kv.mod_revision)
                .put(&key, serde_json::to_vec(&r).expect("records serialize"));
            if let TxnOutcome::Committed { .. } = self.store.txn(txn).await? {
                let mut inner = self.inner.lock().expect("registry lock");
                Self::apply_record(&mut inner, r);
                warn!(host, "host revoked");
                return Ok(true);
            }
        }
        Err(SouthboundError::Invalid(format!(
            "host {host} kept changing during revocation; try again"
        )))
    }

    /// Removes a host: its connections close now, its certificate is refused, and its name
    /// may be enrolled again. False if the host is unknown.
    pub async fn remove(&self, host: &str) -> Result<bool, SouthboundError> {
        let key = format!("{HOSTS}{host}");
        let (kv, _) = self.store.get(&key).await?;
        if kv.is_none() {
            return Ok(false);
        }
        self.store
            .txn(
                Txn::new()
                    .delete(&key)
                    .delete(format!("{SEEN}{host}"))
                    .delete(format!("{}{host}", crate::compile::TUNNELS)),
            )
            .await?;
        let mut inner = self.inner.lock().expect("registry lock");
        inner.hosts.remove(host);
        inner.runtime.remove(host);
        Self::close_host(&mut inner, host, None);
        warn!(host, "host removed");
        Ok(true)
    }
}
