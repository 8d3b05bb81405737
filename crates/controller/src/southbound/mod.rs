//! The southbound service: one TLS port (default 9798) where host agents enrol and keep their
//! session, the controller's CA, join tokens, the host registry and host-write checks.
//!
//! ```text
//!  start() ─► CA (store: ca/southbound/*) ─► server cert ─► rustls ServerConfig
//!          ─► Registry (store: southbound/hosts/*, watched) ─► accept loop (tls.rs)
//!          ─► tonic Southbound service (service.rs): Enroll | Session drivers
//!          ─► binding expiry task (learned bindings, writes.rs)
//!          ─► store probe: no answer for store_loss_grace ─► close every session, refuse new ones
//! ```
//!
//! Architecture invariants: a host's identity is the name in its verified client
//! certificate, never a message field; a host reads only its own view (the session is
//! built for the certificate's name) and writes only its own rows; the session logic is the
//! sans-IO `weft-southbound` crate, this module only does I/O around it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};
use weft_proto as pb;
use weft_southbound::{BindingLimits, BindingTable, LearnedBinding, SessionConfig, ViewSource};
use weft_store::{Store, StoreError};

pub mod ca;
pub mod hosts;
pub mod rest;
pub mod service;
pub mod tls;
pub mod writes;

pub use ca::CertificateAuthority;
pub use hosts::{HostInfo, JoinTokenRecord};
pub use writes::{HostWriteSink, MemoryWriteSink};

/// Errors of the southbound service.
#[derive(Debug, thiserror::Error)]
pub enum SouthboundError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Certificates or TLS could not be set up.
    #[error("certificate or TLS setup failed: {0}")]
    Certificate(String),
    /// A request was invalid.
    #[error("{0}")]
    Invalid(String),
    /// The listening socket could not be bound.
    #[error("binding the southbound port {addr}: {source}; is another controller running there?")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Configuration of the southbound service.
#[derive(Clone, Debug)]
pub struct SouthboundConfig {
    /// Listen address (default `0.0.0.0:9798`: agents dial in from other machines).
    pub listen: SocketAddr,
    /// Names or addresses put in the controller's certificate besides
    /// [`weft_proto::SERVER_NAME`] (agents verify that name whatever they dial).
    pub server_names: Vec<String>,
    /// Lifetime of host certificates.
    pub host_cert_validity: Duration,
    /// Lifetime of the controller's TLS certificate (issued at each start).
    pub server_cert_validity: Duration,
    /// Largest message accepted from an agent.
    pub max_agent_message: usize,
    /// Largest message sent to an agent (updates are chunked well below it).
    pub max_controller_message: usize,
    /// Session tuning.
    pub session: SessionConfig,
    /// Learned-binding limits.
    pub bindings: BindingLimits,
    /// TLS handshake timeout.
    pub handshake_timeout: Duration,
    /// Concurrent TLS handshakes.
    pub max_handshakes: usize,
    /// Messages queued towards one agent before its session waits.
    pub session_queue: usize,
    /// Sessions one host may hold at once on this replica (an agent needs one).
    pub max_sessions_per_host: usize,
    /// TLS connections one host may hold at once on this replica.
    pub max_connections_per_host: usize,
    /// How long a connection without a client certificate (enrolment only) may stay open.
    pub enrol_connection_lifetime: Duration,
    /// HTTP/2 keepalive: dead agents are dropped after interval + timeout.
    pub keepalive: Duration,
    /// A replica that cannot read its store for this long closes its agents'
    /// sessions and refuses new ones until it can again: its views no longer
    /// follow intent, and its agents move to a replica whose views do.
    pub store_loss_grace: Duration,
}

impl Default for SouthboundConfig {
    fn default() -> Self {
        SouthboundConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], pb::DEFAULT_PORT)),
            server_names: Vec::new(),
            host_cert_validity: Duration::from_secs(365 * 86_400),
            server_cert_validity: Duration::from_secs(825 * 86_400),
            max_agent_message: 1024 * 1024,
            max_controller_message: 16 * 1024 * 1024,
            session: SessionConfig::default(),
            bindings: BindingLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 512,
            session_queue: 32,
            max_sessions_per_host: 4,
            max_connections_per_host: 8,
            enrol_connection_lifetime: Duration::from_secs(30),
            keepalive: Duration::from_secs(20),
            store_loss_grace: Duration::from_secs(3),
        }
    }
}

/// State shared by the service, the sessions and the admin calls.
pub(crate) struct Shared {
    pub(crate) registry: Arc<hosts::Registry>,
    pub(crate) ca: Arc<CertificateAuthority>,
    pub(crate) view: Arc<dyn ViewSource>,
    pub(crate) sink: Arc<dyn HostWriteSink>,
    pub(crate) bindings: Mutex<BindingTable>,
    pub(crate) cfg: SouthboundConfig,
    /// Set while the store is unreachable beyond `store_loss_grace`.
    pub(crate) store_lost: AtomicBool,
}

/// Administration of hosts and join tokens (for the REST API and the CLI).
#[derive(Clone)]
pub struct HostAdmin {
    shared: Arc<Shared>,
}

impl HostAdmin {
    /// Creates a one-time join token valid for `ttl`, optionally for one host name only.
    /// Returns its record and its text, shown once.
    pub async fn create_join_token(
        &self,
        host: Option<String>,
        ttl: Duration,
        description: String,
    ) -> Result<(JoinTokenRecord, String), SouthboundError> {
        self.shared
            .registry
            .create_join_token(&self.shared.ca, host, ttl, description, service::now_unix())
            .await
    }

    /// Join tokens (without secrets).
    pub async fn join_tokens(&self) -> Result<Vec<JoinTokenRecord>, SouthboundError> {
        self.shared.registry.list_join_tokens().await
    }

    /// Deletes a join token.
    pub async fn delete_join_token(&self, id: &str) -> Result<bool, SouthboundError> {
        self.shared.registry.delete_join_token(id).await
    }

    /// Enrolled hosts with connection state and last seen.
    pub fn hosts(&self) -> Vec<HostInfo> {
        let table = self.shared.bindings.lock().expect("binding table lock");
        self.shared.registry.list(|h| table.host_len(h))
    }

    /// Revokes a host's certificate and closes its connections now.
    pub async fn revoke(&self, host: &str) -> Result<bool, SouthboundError> {
        let r = self
            .shared
            .registry
            .revoke(host, service::now_unix())
            .await?;
        if r {
            self.shared
                .bindings
                .lock()
                .expect("binding table lock")
                .remove_host(host);
        }
        Ok(r)
    }

    /// Removes a host (its name may be enrolled again) and closes its connections now.
    pub async fn remove(&self, host: &str) -> Result<bool, SouthboundError> {
        let r = self.shared.registry.remove(host).await?;
        if r {
            self.shared
                .bindings
                .lock()
                .expect("binding table lock")
                .remove_host(host);
        }
        Ok(r)
    }

    /// The learned bindings of a port (for the compiler).
    pub fn learned_bindings(&self, port_id: &str) -> Vec<LearnedBinding> {
        self.shared
            .bindings
            .lock()
            .expect("binding table lock")
            .of_port(port_id)
    }

    /// The CA certificate agents trust, PEM.
    pub fn ca_pem(&self) -> String {
        self.shared.ca.cert_pem().to_string()
    }

    /// TCP bytes (received, sent) on the southbound port of this replica since it started,
    /// TLS handshakes and refused connections included.
    pub fn wire_bytes(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        let b = self.shared.registry.wire_bytes();
        (
            b.received.load(Ordering::Relaxed),
            b.sent.load(Ordering::Relaxed),
        )
    }

    /// Open TLS connections on this replica.
    pub fn connection_count(&self) -> usize {
        self.shared.registry.connection_count()
    }
}

/// A running southbound service.
pub struct Southbound {
    addr: SocketAddr,
    admin: HostAdmin,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Southbound {
    /// Sets up the CA and the registry from `store`, binds the port and serves agents,
    /// reading their views from `view` and sending their writes to `sink`.
    pub async fn start(
        cfg: SouthboundConfig,
        store: Arc<dyn Store>,
        view: Arc<dyn ViewSource>,
        sink: Arc<dyn HostWriteSink>,
    ) -> Result<Southbound, SouthboundError> {
        let now = service::now_unix();
        let ca = Arc::new(CertificateAuthority::load_or_create(&store, now).await?);
        let (registry, revision) = hosts::Registry::load(store.clone()).await?;
        let (server_cert, server_key) =
            ca.issue_server(&cfg.server_names, now, cfg.server_cert_validity)?;
        let tls = tls::server_config(
            ca.cert_der(),
            vec![server_cert.der.clone(), ca.cert_der().clone()],
            server_key,
            registry.clone(),
        )?;
        let listener = listen(cfg.listen).map_err(|source| SouthboundError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SouthboundError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let shared = Arc::new(Shared {
            registry: registry.clone(),
            ca,
            view,
            sink,
            bindings: Mutex::new(BindingTable::new(cfg.bindings.clone())),
            cfg: cfg.clone(),
            store_lost: AtomicBool::new(false),
        });
        let (stop, stopped) = watch::channel(false);
        let (conn_tx, conn_rx) = mpsc::channel(256);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(tls::accept_loop(
            listener,
            TlsAcceptor::from(Arc::new(tls)),
            registry.clone(),
            tls::AcceptLimits {
                handshake_timeout: cfg.handshake_timeout,
                max_handshakes: cfg.max_handshakes,
                max_connections_per_host: cfg.max_connections_per_host,
                enrol_connection_lifetime: cfg.enrol_connection_lifetime,
            },
            conn_tx,
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(registry.clone().follow(revision)));
        tasks.push(tokio::spawn(expire_bindings(
            shared.clone(),
            stopped.clone(),
        )));
        let svc = pb::southbound_server::SouthboundServer::new(service::Service {
            shared: shared.clone(),
        })
        .max_decoding_message_size(cfg.max_agent_message)
        .max_encoding_message_size(cfg.max_controller_message);
        let mut stopped_srv = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let r = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(cfg.keepalive))
                .http2_keepalive_timeout(Some(cfg.keepalive / 2))
                .max_concurrent_streams(Some(16))
                .add_service(svc)
                .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), async move {
                    let _ = stopped_srv.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = r {
                warn!(error = %e, "southbound server failed");
            }
        }));
        tasks.push(tokio::spawn(watch_store(shared.clone(), store, stopped)));
        info!(%addr, "southbound listening");
        Ok(Southbound {
            addr,
            admin: HostAdmin { shared },
            stop,
            tasks,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Host and join-token administration.
    pub fn admin(&self) -> HostAdmin {
        self.admin.clone()
    }

    /// Stops listening and closes every agent connection at once (agents keep forwarding
    /// with their last view and reconnect with backoff).
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        self.admin.shared.registry.close_all();
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

/// The key the store probe reads (absent; a read of it costs a round trip).
const STORE_PROBE_KEY: &str = "southbound/probe";

/// Reads the store a few times per `store_loss_grace`. When no read succeeded
/// for that long, closes every agent session and refuses new ones (agents
/// then sync with another replica: this one's views no longer follow
/// intent); once a read succeeds again, serves agents again. A slow read is
/// given until the grace period ends, and any other request the store
/// answered meanwhile ([`Store::last_answer`]) counts too, so a loaded store
/// is not taken for a lost one.
async fn watch_store(shared: Arc<Shared>, store: Arc<dyn Store>, mut stop: watch::Receiver<bool>) {
    let grace = shared.cfg.store_loss_grace;
    let period = (grace / 4).max(Duration::from_millis(100));
    let mut last_ok = Instant::now();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut stop) => return,
        }
        let wait = (last_ok + grace)
            .saturating_duration_since(Instant::now())
            .max(period);
        let probed = matches!(
            tokio::time::timeout(wait, store.get(STORE_PROBE_KEY)).await,
            Ok(Ok(_))
        );
        // The probe may wait behind thousands of other requests (a cold start of thousands
        // of agents writing their tunnel addresses); any of them answered lately is as good.
        let answered = store.last_answer().is_some_and(|t| t.elapsed() < period);
        if probed || answered {
            last_ok = Instant::now();
            if shared.store_lost.swap(false, Ordering::SeqCst) {
                info!("the store answers again: serving host agents");
            }
        } else if last_ok.elapsed() >= grace && !shared.store_lost.swap(true, Ordering::SeqCst) {
            warn!(
                ?grace,
                "the store has not answered for the grace period: closing agent sessions so they move to a replica that reaches it"
            );
            shared.registry.close_all();
        }
    }
}

/// Connections the kernel queues until the accept loop takes them. The standard 128 drops
/// the SYNs of a reconnect storm (thousands of agents within a second after a replica
/// died), which the agents only retry after a second or more; a deep queue holds them
/// until a handshake slot frees.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Drops expired learned bindings every few seconds and tells the sink.
use tls::stopped;

async fn expire_bindings(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut stop) => return,
        }
        let changed: Vec<(String, Vec<LearnedBinding>)> = {
            let mut table = shared.bindings.lock().expect("binding table lock");
            table
                .expire(Instant::now())
                .into_iter()
                .map(|p| {
                    let b = table.of_port(&p);
                    (p, b)
                })
                .collect()
        };
        for (port, bindings) in changed {
            shared.sink.bindings_changed(&port, &bindings).await;
        }
    }
}
