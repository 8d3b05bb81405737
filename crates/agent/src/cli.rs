//! Command-line entry points for the `weft` binary: `weft agent` and `weft host enroll`.
//! The binary adds these `clap::Args` as subcommands and calls the `run_*` functions.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tracing::info;

use crate::forwarding::{ForwardingArgs, PortStatusReporter};
use crate::{AgentOptions, Backend, Identity, MemoryBackend, RedbViewStore};

/// `weft agent`.
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Controller address(es), HOST[:PORT] (default port 9798); tried in turn.
    #[arg(
        long = "controller",
        required = true,
        value_delimiter = ',',
        env = "WEFT_CONTROLLERS"
    )]
    pub controllers: Vec<String>,
    /// State directory: identity from `weft host enroll` and the local view.
    #[arg(
        long,
        default_value = "/var/lib/weft/agent",
        env = "WEFT_AGENT_STATE_DIR"
    )]
    pub state_dir: PathBuf,
    /// This host's VXLAN tunnel endpoint (an address of the underlay),
    /// announced to the controller so other hosts can reach its ports.
    #[arg(long, env = "WEFT_TUNNEL_IP")]
    pub tunnel_ip: Option<std::net::IpAddr>,
    /// The forwarder backend's options.
    #[command(flatten)]
    pub forwarding: ForwardingArgs,
}

/// `weft host enroll`.
#[derive(Args, Debug, Clone)]
pub struct EnrollArgs {
    /// Controller address, HOST[:PORT] (default port 9798).
    #[arg(long)]
    pub controller: String,
    /// The join token from `weft host token create`.
    #[arg(long, env = "WEFT_JOIN_TOKEN")]
    pub token: String,
    /// This host's name (what ports are bound to).
    #[arg(long)]
    pub name: String,
    /// State directory to write the identity into.
    #[arg(
        long,
        default_value = "/var/lib/weft/agent",
        env = "WEFT_AGENT_STATE_DIR"
    )]
    pub state_dir: PathBuf,
}

/// Runs `weft host enroll`.
pub async fn run_enroll(args: EnrollArgs) -> Result<()> {
    let id = crate::enroll(&args.controller, &args.token, &args.name, &args.state_dir).await?;
    println!(
        "enrolled as {} ; identity written to {}",
        id.host,
        args.state_dir.display()
    );
    Ok(())
}

/// Runs `weft agent` until Ctrl-C or SIGTERM, with the userspace forwarder as its backend
/// (or only recording views with `--no-forwarder`). With the forwarder, the agent reports
/// each local port up once its TAP exists and down once it is gone.
pub async fn run_agent(args: AgentArgs) -> Result<()> {
    let identity = Identity::load(&args.state_dir)?;
    let store = RedbViewStore::open(&args.state_dir.join("view.redb"))?;
    // The forwarder starts on this thread: its TAPs are created in this process's netns.
    let forwarder = args.forwarding.forwarder(&identity.host, args.tunnel_ip)?;
    let monitor = forwarder.as_ref().map(|f| f.monitor());
    let backend: Box<dyn Backend> = match forwarder {
        Some(f) => Box::new(f),
        None => Box::new(MemoryBackend::new()),
    };
    let mut opts = AgentOptions::new(args.controllers);
    opts.tunnel_address = args.tunnel_ip;
    opts.jitter_seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let agent = crate::start(identity, opts, Box::new(store), backend).await?;
    let mut reporter = monitor.map(PortStatusReporter::new);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    use tokio::signal::unix::{SignalKind, signal};
    let (mut int, mut term) = (
        signal(SignalKind::interrupt())?,
        signal(SignalKind::terminate())?,
    );
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = tick.tick() => {
                if let Some(r) = &mut reporter {
                    r.poll(&agent);
                }
            }
        }
    }
    info!("stopping");
    agent.shutdown().await;
    Ok(())
}
