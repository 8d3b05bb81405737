//! `weft-fwd`: a static VXLAN point-to-point forwarder for tests and benchmarks.
//!
//! Creates TAPs in the current network namespace and bridges each one to a
//! remote VTEP with a VNI, through the `weft-dataplane` forwarder:
//!
//! ```text
//! weft-fwd --tap fwtap0 --local 192.0.2.1 --remote 192.0.2.2 --vni 100 --port 4789
//! ```
//!
//! Runs until SIGTERM/SIGINT/SIGHUP, then prints its counters as `key=value`
//! lines on stdout.

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use nix::sys::signal::{SigSet, Signal};
use weft_dataplane::{
    BridgeLink, Forwarder, ForwarderConfig, StaticBridge, TapOffloads, TapOptions, Threading,
    VifId, Vni,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Threads {
    /// One thread polls TAPs and the tunnel.
    Single,
    /// One thread per direction.
    PerDirection,
}

/// Static VXLAN bridge: every frame from TAP i goes to remote i with VNI i, and back.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TAP interface to create (repeat for several).
    #[arg(long = "tap", required = true)]
    taps: Vec<String>,
    /// Local underlay address to bind the tunnel socket to.
    #[arg(long)]
    local: IpAddr,
    /// Remote VTEP per TAP (one value applies to all TAPs).
    #[arg(long = "remote", required = true)]
    remotes: Vec<IpAddr>,
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

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args = Args::parse();
    let remotes = per_tap("remote", &args.remotes, args.taps.len())?;
    let vnis = per_tap("vni", &args.vnis, args.taps.len())?;

    let mut cfg = ForwarderConfig::new(args.taps.clone(), SocketAddr::new(args.local, args.port));
    if args.no_offload {
        for t in &mut cfg.taps {
            t.options = TapOptions {
                vnet_hdr: false,
                offloads: TapOffloads::NONE,
            };
        }
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
