//! `weft-fwd`: the `weft-dataplane` forwarder on its own, for tests and benchmarks.
//!
//! Static bridge mode creates TAPs in the current network namespace and
//! bridges each one to a remote VTEP with a VNI:
//!
//! ```text
//! weft-fwd --tap fwtap0 --local 192.0.2.1 --remote 192.0.2.2 --vni 100 --port 4789
//! ```
//!
//! View mode runs the host's real pipeline from a host view, as the agent's
//! backend does (TAPs named `wt…` after the vifs, printed at start as
//! `tap VIF NAME` lines); SIGHUP re-reads the file and swaps the new program
//! in. The file holds one record per line, `KEY JSON` (the records an agent
//! holds, see `weft_compiler::view::encode_record`):
//!
//! ```text
//! weft-fwd --view host-a.view --host host-a --local 192.0.2.1
//! ```
//!
//! Runs until SIGTERM/SIGINT (and, in bridge mode, SIGHUP), then prints its
//! counters as `key=value` lines on stdout.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use nix::sys::signal::{SigSet, Signal};
use weft_dataplane::{
    BridgeLink, Forwarder, ForwarderConfig, HostConfig, HostForwarder, StaticBridge, TapOffloads,
    TapOptions, Threading, VifId, Vni,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Threads {
    /// One thread polls TAPs and the tunnel.
    Single,
    /// One thread per direction.
    PerDirection,
}

/// Static VXLAN bridge (every frame from TAP i goes to remote i with VNI i,
/// and back), or the host's pipeline from a view file (`--view`).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TAP interface to create (repeat for several).
    #[arg(long = "tap", required_unless_present = "view")]
    taps: Vec<String>,
    /// Local underlay address to bind the tunnel socket to.
    #[arg(long)]
    local: IpAddr,
    /// Remote VTEP per TAP (one value applies to all TAPs).
    #[arg(long = "remote", required_unless_present = "view")]
    remotes: Vec<IpAddr>,
    /// Run the host pipeline of this view file (lines `KEY JSON`) instead of a bridge.
    #[arg(long, conflicts_with_all = ["taps", "remotes"])]
    view: Option<PathBuf>,
    /// The host the view was compiled for.
    #[arg(long, default_value = "host", requires = "view")]
    host: String,
    /// Flow-cache entries per worker (view mode).
    #[arg(long, default_value_t = 16_384)]
    flow_cache: usize,
    /// VNI per TAP (one value applies to all TAPs).
    #[arg(long = "vni", default_value = "100")]
    vnis: Vec<u32>,
    /// VXLAN UDP port, local and remote.
    #[arg(long, default_value_t = 4789)]
    port: u16,
    /// Thread layout.
    #[arg(long, value_enum, default_value_t = Threads::Single)]
    threads: Threads,
    /// Open TAPs without virtio-net headers (no checksum/TSO offload from the guest).
    #[arg(long)]
    no_offload: bool,
    /// Do not use UDP GSO on send.
    #[arg(long)]
    no_gso: bool,
    /// Do not use UDP GRO on receive.
    #[arg(long)]
    no_gro: bool,
    /// Do not coalesce received TCP segments into super-frames.
    #[arg(long)]
    no_coalesce: bool,
    /// MTU of the underlay; TCP segments are sized so VXLAN packets fit it.
    #[arg(long, default_value_t = 1500)]
    underlay_mtu: u16,
    /// Messages per recvmmsg.
    #[arg(long, default_value_t = 32)]
    rx_batch: usize,
    /// Print counters every this many seconds (0: only at exit).
    #[arg(long, default_value_t = 0)]
    stats_interval: u64,
}

fn per_tap<T: Copy>(what: &str, values: &[T], taps: usize) -> anyhow::Result<Vec<T>> {
    match values.len() {
        1 => Ok(vec![values[0]; taps]),
        n if n == taps => Ok(values.to_vec()),
        n => bail!("{n} values of --{what} for {taps} TAPs: give one, or one per --tap"),
    }
}

/// Reads a view file: one record per line, `KEY JSON`.
fn read_view(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading view file {}", path.display()))?;
    let mut records = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, json)) = line.split_once(' ') else {
            bail!(
                "{}:{}: expected `KEY JSON`, got {line:?}",
                path.display(),
                i + 1
            );
        };
        records.insert(key.to_string(), json.as_bytes().to_vec());
    }
    Ok(records)
}

/// Runs the host pipeline of a view until SIGTERM/SIGINT; SIGHUP reloads the view.
fn run_view(args: &Args, cfg: ForwarderConfig, tap_options: TapOptions) -> anyhow::Result<()> {
    let path = args.view.clone().expect("view mode");
    let mut host_cfg = HostConfig::new(cfg.tunnel_local);
    host_cfg.forwarder = cfg;
    host_cfg.tap_options = tap_options;
    host_cfg.pipeline.flow_cache_entries = args.flow_cache;
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    signals.thread_block().context("blocking signals")?;
    let mut fwd = HostForwarder::start(host_cfg).context("starting the forwarder")?;
    let apply = |fwd: &mut HostForwarder| -> anyhow::Result<()> {
        let records = read_view(&path)?;
        let applied = fwd
            .apply_records(&args.host, &records)
            .context("applying the view")?;
        for t in &applied.added {
            println!("tap {} {}", t.vif, t.tap);
        }
        tracing::info!(
            generation = applied.generation,
            added = applied.added.len(),
            removed = applied.removed.len(),
            "view applied"
        );
        Ok(())
    };
    apply(&mut fwd)?;
    let monitor = fwd.monitor();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| -> anyhow::Result<()> {
        if args.stats_interval > 0 {
            let m = monitor.clone();
            s.spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    done_rx.recv_timeout(Duration::from_secs(args.stats_interval))
                {
                    print!("{}", m.stats());
                }
            });
        }
        loop {
            match signals.wait().context("waiting for a signal")? {
                Signal::SIGHUP => {
                    if let Err(e) = apply(&mut fwd) {
                        tracing::error!(
                            error = format!("{e:#}"),
                            "view not applied; the previous program keeps running"
                        );
                    }
                }
                signal => {
                    tracing::info!(?signal, "stopping");
                    break;
                }
            }
        }
        drop(done_tx);
        Ok(())
    })?;
    let stats = fwd.stop().context("stopping workers")?;
    print!("{stats}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args = Args::parse();
    let tap_options = if args.no_offload {
        TapOptions {
            vnet_hdr: false,
            offloads: TapOffloads::NONE,
        }
    } else {
        TapOptions::default()
    };
    let mut cfg = ForwarderConfig::new(args.taps.clone(), SocketAddr::new(args.local, args.port));
    for t in &mut cfg.taps {
        t.options = tap_options;
    }
    cfg.tunnel.udp_gso = !args.no_gso;
    cfg.tunnel.udp_gro = !args.no_gro;
    cfg.coalesce = !args.no_coalesce;
    cfg.rx_batch = args.rx_batch;
    cfg.underlay_mtu = args.underlay_mtu;
    cfg.threading = match args.threads {
        Threads::Single => Threading::Single,
        Threads::PerDirection => Threading::PerDirection,
    };
    if args.view.is_some() {
        return run_view(&args, cfg, tap_options);
    }
    let remotes = per_tap("remote", &args.remotes, args.taps.len())?;
    let vnis = per_tap("vni", &args.vnis, args.taps.len())?;

    let mut links = Vec::new();
    for (i, (remote, vni)) in remotes.iter().zip(&vnis).enumerate() {
        let vni = Vni::new(*vni).with_context(|| format!("--vni for TAP {}", args.taps[i]))?;
        links.push(BridgeLink {
            vif: VifId(i as u32),
            remote: *remote,
            vni,
        });
    }

    // Block the stop signals before any thread starts, so only sigwait sees them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    signals.thread_block().context("blocking signals")?;

    let fwd = Forwarder::open(cfg).context("opening devices")?;
    for (tap, link) in fwd.taps().iter().zip(&links) {
        tracing::info!(
            tap = tap.name(),
            offloads = ?tap.offloads(),
            remote = %link.remote,
            vni = %link.vni,
            "bridging"
        );
    }
    tracing::info!(
        local = %fwd.tunnel().local_addr(),
        udp_gso = fwd.tunnel().gso(),
        udp_gro = fwd.tunnel().gro(),
        "tunnel socket ready"
    );
    let bridge = StaticBridge::new(&links);
    let running = fwd.start(|_| bridge.clone()).context("starting workers")?;

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let signal = std::thread::scope(|s| {
        if args.stats_interval > 0 {
            let running = &running;
            s.spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    done_rx.recv_timeout(Duration::from_secs(args.stats_interval))
                {
                    print!("{}", running.stats());
                }
            });
        }
        let signal = signals.wait();
        drop(done_tx);
        signal
    })
    .context("waiting for a signal")?;
    tracing::info!(?signal, "stopping");
    let stats = running.stop().context("stopping workers")?;
    print!("{stats}");
    Ok(())
}
