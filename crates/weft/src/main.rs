//! `weft`: one binary for the controller daemon (`weft up`), the host agent
//! (`weft agent`, later) and the command-line client for every resource.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// mimalloc: the compiler and the API allocate many small objects from
/// several threads; glibc's per-thread arenas spent most of a full compile
/// growing heaps (measured with perf: 0.4 s instead of 1.2 s at 20k ports).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bgp_cli; // Hook (BGP integration): `weft bgp`.
mod cli;
mod demo;
mod hosts_cli;
mod output;
mod up;

/// Weft: network virtualization for NFV, edge and hybrid clouds.
#[derive(Parser, Debug)]
#[command(name = "weft", version, about, propagate_version = true)]
pub struct Opts {
    /// REST endpoint of the controller.
    #[arg(long, global = true, env = "WEFT_ENDPOINT", default_value = weft_client::DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// API token (default: the admin token in the data directory, if readable).
    #[arg(long, global = true, env = "WEFT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory of a local controller.
    #[arg(
        long,
        global = true,
        env = "WEFT_DATA_DIR",
        default_value = "weft-data"
    )]
    pub data_dir: PathBuf,
    /// Project to act in (name or id), for tokens not bound to one.
    #[arg(long, short = 'p', global = true, env = "WEFT_PROJECT")]
    pub project: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = output::Format::Table)]
    pub output: output::Format,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the controller: embedded store in the data directory, REST on loopback.
    Up(up::UpArgs),
    /// The controller's BGP speaker: local AS, router id, peers, routes.
    Bgp {
        #[command(subcommand)]
        cmd: bgp_cli::BgpCmd,
    }, // Hook (BGP integration).
    /// Run the host agent: dial the controller, keep the view, forward packets.
    Agent(weft_agent::cli::AgentArgs),
    /// Hosts: enroll this host, list, revoke or remove hosts.
    Host {
        #[command(subcommand)]
        cmd: hosts_cli::HostCmd,
    },
    /// One-time join tokens for enrolling hosts.
    JoinToken {
        #[command(subcommand)]
        cmd: hosts_cli::JoinTokenCmd,
    },
    /// Build the seed's any-to-any scenario in network namespaces on this
    /// machine (root), show its reachability matrix and a trace, clean up.
    Demo(demo::DemoArgs),
    #[command(flatten)]
    Resource(cli::ResourceCmd),
}

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    let default_level = match opts.cmd {
        Cmd::Up(_) | Cmd::Agent(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    // The demo drives its lab synchronously (the lab has its own runtime).
    if let Cmd::Demo(ref a) = opts.cmd {
        return exit_code(demo::run(a));
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result: Result<()> = rt.block_on(async move {
        match opts.cmd {
            Cmd::Up(ref a) => up::run(&opts, a).await,
            Cmd::Resource(ref r) => cli::run(&opts, r).await,
            Cmd::Agent(ref a) => weft_agent::cli::run_agent(a.clone()).await,
            Cmd::Host { ref cmd } => hosts_cli::run_host(&opts, cmd).await,
            Cmd::JoinToken { ref cmd } => hosts_cli::run_join_token(&opts, cmd).await,
            Cmd::Bgp { ref cmd } => bgp_cli::run(&opts, cmd).await, // Hook (BGP integration).
            Cmd::Demo(_) => unreachable!("run before the runtime starts"),
        }
    });
    exit_code(result)
}

fn exit_code(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
