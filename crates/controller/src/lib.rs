//! The Weft controller: the intent writer over a [`Store`], the REST API
//! with tokens and a policy file, and (later) the compile loop, the
//! southbound service and the BGP speaker.
//!
//! ```text
//!  REST (axum) ──► api ──Command──► intent::IntentService ──Txn──► Store
//!                                          │ ChangeBatch
//!                                          ▼
//!                                 compiler / southbound (later)
//! ```
//!
//! The controller is the only place where HTTP, the store and the model
//! meet; the model and compiler crates know nothing of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::info;
use weft_store::{EmbeddedStore, Store};

pub mod api;
pub mod auth;
pub mod bgp; // Hook (BGP integration).
pub mod compile;
pub mod intent;
pub mod keys;
pub mod policy;
pub mod sink;
pub mod southbound;
pub mod views;

pub use intent::{ChangeBatch, IntentService};
pub use policy::Policy;

/// Default REST address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9797";

/// Which store holds the intent.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// The embedded, crash-safe file store in the data directory (default).
    Embedded,
    /// An etcd v3 cluster (its client endpoints); controllers sharing one
    /// cluster are replicas of each other.
    Etcd(Vec<String>),
}

impl StoreConfig {
    /// Parses `embedded` or `etcd://host:port,host:port`.
    pub fn parse(s: &str) -> Result<StoreConfig, String> {
        if s == "embedded" {
            return Ok(StoreConfig::Embedded);
        }
        weft_etcd::parse_store_url(s)
            .map(StoreConfig::Etcd)
            .map_err(|e| format!("{e} (use `embedded` or etcd://host:port[,host:port...])"))
    }
}

/// How to run a controller.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Directory for the embedded store, the admin token and the policy file.
    pub data_dir: PathBuf,
    /// REST listen address.
    pub listen: SocketAddr,
    /// The intent store.
    pub store: StoreConfig,
    /// Policy file; default `<data_dir>/policy.yaml`, written with the
    /// shipped defaults when absent.
    pub policy_file: Option<PathBuf>,
    /// The southbound (host agents, TLS); `None` runs without one.
    pub southbound: Option<southbound::SouthboundConfig>,
}

impl ControllerConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ControllerConfig {
            data_dir: data_dir.into(),
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            store: StoreConfig::Embedded,
            policy_file: None,
            southbound: Some(southbound::SouthboundConfig::default()),
        }
    }
}

/// A running controller.
pub struct Controller {
    /// The bound REST address.
    pub addr: SocketAddr,
    /// The admin token, when this start created it (first start).
    pub new_admin_token: Option<String>,
    /// Where the admin token is kept.
    pub admin_token_file: PathBuf,
    /// The policy file in force.
    pub policy_file: PathBuf,
    intent: IntentService,
    compile: compile::CompileService,
    bgp: bgp::BgpService, // Hook (BGP integration).
    southbound: Option<southbound::Southbound>,
    singleton_task: Option<JoinHandle<()>>,
    /// The southbound address agents dial, when running.
    pub southbound_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

impl Controller {
    /// Opens the store, loads intent, makes sure an admin token exists and
    /// serves the REST API.
    pub async fn start(cfg: ControllerConfig) -> Result<Controller> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
        let mut etcd: Option<weft_etcd::EtcdStore> = None;
        let store: Arc<dyn Store> = match &cfg.store {
            StoreConfig::Embedded => {
                let path = cfg.data_dir.join("intent.redb");
                Arc::new(
                    EmbeddedStore::open(&path).with_context(|| {
                        format!("opening the embedded store {}", path.display())
                    })?,
                )
            }
            StoreConfig::Etcd(endpoints) => {
                let e = weft_etcd::EtcdStore::connect(endpoints)
                    .await
                    .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
                etcd = Some(e.clone());
                Arc::new(e)
            }
        };
        // Every component's store requests count as signs of life for the southbound's
        // store probe (a store busy with thousands of writes is not a lost one).
        let store: Arc<dyn Store> = Arc::new(weft_store::Observed::new(store));
        let policy_file = cfg
            .policy_file
            .clone()
            .unwrap_or_else(|| cfg.data_dir.join("policy.yaml"));
        if cfg.policy_file.is_none() && !policy_file.exists() {
            std::fs::write(&policy_file, policy::DEFAULT_POLICY)
                .with_context(|| format!("writing {}", policy_file.display()))?;
        }
        let policy_text = std::fs::read_to_string(&policy_file)
            .with_context(|| format!("reading policy file {}", policy_file.display()))?;
        let policy = Policy::parse(&policy_text)
            .with_context(|| format!("in policy file {}", policy_file.display()))?;

        let intent = IntentService::start(store.clone())
            .await
            .context("loading intent from the store")?;
        let tokens = auth::Tokens::new(store.clone());
        let admin_token_file = cfg.data_dir.join("admin-token");
        let new_admin_token = if tokens.any().await? {
            None
        } else {
            let (_, token) = tokens
                .create(None, vec!["admin".into()], "created at first start".into())
                .await?;
            write_private(&admin_token_file, &format!("{token}\n"))?;
            Some(token)
        };

        let compile = compile::CompileService::start(intent.clone());
        compile
            .tunnels
            .attach(store.clone())
            .await
            .context("loading host tunnel addresses from the store")?;
        // Hook (BGP integration): the speaker, its config from the store, route sync.
        // On etcd, singletons (the BGP speaker) run on the replica holding
        // the lock and move when it dies; every replica follows their config.
        let bgp = bgp::BgpService::start_with(
            store.clone(),
            intent.clone(),
            compile.clone(),
            etcd.is_none(),
        )
        .await?;
        let singleton_task = etcd
            .clone()
            .map(|etcd| tokio::spawn(singletons(etcd, store.clone(), bgp.clone())));
        let state = api::AppState {
            intent: intent.clone(),
            tokens,
            policy: Arc::new(policy),
            openapi: Arc::new(api::openapi::document(api::openapi::extra_paths())),
            compile: compile.clone(),
        };
        let views = views::HostViews::start(compile.clone());
        let southbound = match &cfg.southbound {
            Some(sb_cfg) => Some(
                southbound::Southbound::start(
                    sb_cfg.clone(),
                    store.clone(),
                    views.clone(),
                    Arc::new(sink::IntentWriteSink {
                        intent: intent.clone(),
                        compile: compile.clone(),
                    }),
                )
                .await
                .context("starting the southbound service")?,
            ),
            None => None,
        };
        let mut extra = api::bgp::routes(bgp.clone()); // Hook (BGP integration).
        if let Some(sb) = &southbound {
            extra = extra.merge(southbound::rest::routes(sb.admin()));
        }
        let app = api::router(state, extra);
        let listener = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding the REST API to {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "REST server failed");
            }
        });
        info!(%addr, "REST API listening");
        Ok(Controller {
            addr,
            new_admin_token,
            admin_token_file,
            policy_file,
            intent,
            compile,
            bgp,
            southbound_addr: southbound.as_ref().map(|s| s.addr()),
            singleton_task,
            southbound,
            stop: Some(stop),
            server,
        })
    }

    /// The intent service (for in-process users such as tests and the compiler).
    pub fn intent(&self) -> &IntentService {
        &self.intent
    }

    /// Host and join-token administration, when the southbound runs.
    pub fn hosts(&self) -> Option<southbound::HostAdmin> {
        self.southbound.as_ref().map(|s| s.admin())
    }

    /// The compile loop (traces, host views).
    pub fn compile(&self) -> &compile::CompileService {
        &self.compile
    }

    /// The BGP speaker and its route sync. (Hook: BGP integration.)
    pub fn bgp(&self) -> &bgp::BgpService {
        &self.bgp
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn shutdown(mut self) {
        // Hand the singletons over (the lock's lease is revoked with it).
        if let Some(t) = self.singleton_task.take() {
            t.abort();
            let _ = t.await;
        }
        self.bgp.shutdown().await; // Hook (BGP integration): Cease to peers.
        if let Some(sb) = self.southbound.take() {
            sb.shutdown().await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
    }

    /// Waits until the server stops (for `weft up`).
    pub async fn wait(self) {
        let _ = self.server.await;
    }
}

/// Holds the singleton lock in turn with the other replicas: while held,
/// this replica runs the BGP speaker. Also follows the BGP configuration
/// others write.
async fn singletons(etcd: weft_etcd::EtcdStore, store: Arc<dyn Store>, bgp: bgp::BgpService) {
    use futures::StreamExt;
    let follow = {
        let bgp = bgp.clone();
        async move {
            // Ends with the singletons task (aborted on shutdown).
            loop {
                let from = store.revision().await.unwrap_or(0) + 1;
                match store.watch(bgp::CONFIG_KEY, from).await {
                    Ok(mut w) => {
                        while let Some(Ok(_)) = w.next().await {
                            if let Err(e) = bgp.reload().await {
                                tracing::warn!(error = %e, "reloading the BGP configuration");
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "watching the BGP configuration"),
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    };
    let follower = tokio::spawn(follow);
    struct AbortOnDrop(JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _follower = AbortOnDrop(follower);
    let id = uuid::Uuid::new_v4().to_string();
    loop {
        match etcd
            .campaign(keys::SINGLETONS, &id, std::time::Duration::from_secs(5))
            .await
        {
            Ok(guard) => {
                info!(replica = %id, "holding the singleton lock: running the BGP speaker here");
                if let Err(e) = bgp.set_active(true).await {
                    tracing::warn!(error = %e, "starting the BGP speaker");
                }
                guard.lost().await;
                tracing::warn!(replica = %id, "lost the singleton lock: stopping the BGP speaker");
                let _ = bgp.set_active(false).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "campaigning for the singleton lock");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}
