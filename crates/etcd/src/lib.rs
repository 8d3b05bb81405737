//! `weft-etcd`: the etcd v3 backend of Weft's [`Store`](weft_store::Store) trait, plus
//! the leases and the leader lock that controller replicas need to share one etcd.
//!
//! ```text
//!  EtcdStore (cheap to clone; clones share one connection)
//!    Store: txn, get, range, revision, compact ──► KV service        ┐ one gRPC channel to the
//!    Store: watch ──► one pump task per stream ──► Watch service     │ endpoint in use; when it
//!    leases, campaign ──► keeper and guard tasks ► Lease service     ┘ fails, the next is dialled
//! ```
//!
//! The gRPC client is generated at build time from a trimmed copy of etcd's protos
//! (`proto/etcd`, see `NOTICE`) by protox and tonic-prost-build: no `protoc` binary is
//! needed. Plain HTTP/2 only: this build has no TLS to etcd, so run etcd on loopback, on
//! a private management network or in a namespace.
//!
//! The backend lives here rather than in `weft-store` so that embedded users of the store
//! crate do not compile tonic, prost and hyper.
//!
//! Semantics are etcd's, mapped one to one onto the trait: a transaction's revision is
//! etcd's response header revision, `create_revision`/`mod_revision` are etcd's, compares
//! on `mod_revision` 0 mean "absent" exactly as in etcd, no-op transactions take no
//! revision, a watch from a compacted revision yields [`StoreError::Compacted`] as its
//! first item. One shift: `compact(r)` compacts etcd at `r - 1`, because etcd drops the
//! deletes made at its compaction revision itself, and the trait promises that a watch
//! from `r` replays revision `r` whole (see `watch.rs`).
//!
//! Writes are retried on another endpoint only when they provably never reached a
//! server; otherwise the caller gets [`StoreError::Unavailable`] saying the outcome is
//! unknown. A watch whose connection breaks resumes on another endpoint from the first
//! revision it has not delivered; after [`EtcdOptions::watch_retry_for`] without any
//! endpoint it yields `Unavailable` and ends, and the caller watches again.
//!
//! This crate does not choose the store for `weft up` (see [`parse_store_url`] for the
//! suggested syntax) and knows nothing of Weft's model.
//!
//! [`testing`] starts real etcd members (one, or a cluster) for tests in any crate.

mod client;
mod endpoints;
mod lease;
mod store;
pub mod testing;
mod watch;

/// Code generated from `proto/etcd`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub(crate) mod pb {
    /// etcd's `mvccpb` package: keys and events.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// etcd's `etcdserverpb` package: the KV, Watch, Lease and Maintenance services.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

pub use endpoints::{EndpointError, parse_endpoint, parse_store_url};
pub use lease::{LeaderGuard, Lease, LeaseKeeper};
pub use store::{EtcdOptions, EtcdStore, MemberStatus};
pub use weft_store::StoreError;
