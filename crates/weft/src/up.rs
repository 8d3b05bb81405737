//! `weft up`: the controller daemon on the embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use weft_controller::{Controller, ControllerConfig};

use crate::Opts;

/// Options of `weft up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    /// REST listen address (loopback by default).
    #[arg(long, default_value = weft_controller::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Policy file (default: <data-dir>/policy.yaml, created with the defaults).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Southbound (host agents, TLS) listen address; `off` runs without one.
    #[arg(long, default_value = "0.0.0.0:9798")]
    pub southbound: String,
    /// Intent store: `embedded` (a file in the data directory) or
    /// `etcd://host:port[,host:port...]` (controllers on one etcd are replicas).
    #[arg(long, env = "WEFT_STORE", default_value = "embedded", value_parser = weft_controller::StoreConfig::parse)]
    pub store: weft_controller::StoreConfig,
}

/// Runs the controller until Ctrl-C or SIGTERM.
pub async fn run(opts: &Opts, args: &UpArgs) -> Result<()> {
    let mut cfg = ControllerConfig::new(&opts.data_dir);
    cfg.listen = args.listen;
    cfg.policy_file = args.policy.clone();
    cfg.store = args.store.clone();
    cfg.southbound = if args.southbound == "off" {
        None
    } else {
        let listen = args.southbound.parse().map_err(|_| {
            anyhow::anyhow!(
                "--southbound {:?} is not an address like 0.0.0.0:9798 (or `off`)",
                args.southbound
            )
        })?;
        Some(weft_controller::southbound::SouthboundConfig {
            listen,
            ..Default::default()
        })
    };
    let ctl = Controller::start(cfg).await?;
    let data = opts.data_dir.display();
    println!("Weft controller is up.");
    println!(
        "  REST API     http://{}/v1  (OpenAPI document: /v1/openapi.json)",
        ctl.addr
    );
    println!("  data         {data}/ (embedded store intent.redb)");
    println!("  policy file  {}", ctl.policy_file.display());
    match ctl.southbound_addr {
        Some(a) => println!(
            "  southbound   {a} (host agents: weft join-token create, then weft host enroll)"
        ),
        None => println!("  southbound   off"),
    }
    match &ctl.new_admin_token {
        Some(t) => println!(
            "  admin token  {t}\n               (shown once; saved in {})",
            ctl.admin_token_file.display()
        ),
        None => println!(
            "  admin token  in {} (created at first start)",
            ctl.admin_token_file.display()
        ),
    }
    println!();
    println!(
        "Use the CLI from another terminal in this directory (it reads the admin token from {data}/admin-token):"
    );
    println!("  cargo run --release -- project create blue");
    println!("  cargo run --release -- -p blue network create net1 --subnet 10.1.1.0/24");
    println!("  cargo run --release -- -p blue port create g1 --network net1 --ip 10.1.1.5");
    println!("  cargo run --release -- -p blue port list");
    println!(
        "Elsewhere: export WEFT_TOKEN=$(cat {data}/admin-token) WEFT_ENDPOINT=http://{}",
        ctl.addr
    );
    println!("Stop with Ctrl-C.");
    wait_for_signal().await?;
    println!("stopping");
    ctl.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
