//! `weft demo`: the seed's any-to-any scenario on this machine, for a
//! newcomer. It builds network namespaces (a switch, a controller, two
//! hosts, six VMs: `weft-lab`), starts `weft up` and two `weft agent`s as
//! child processes of this binary, configures everything through the REST
//! API, prints the reachability matrix measured with real pings and a `weft
//! trace` of one path, and removes everything again, also on Ctrl-C.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use weft_lab::lab::Options;
use weft_lab::{Lab, seed};

/// Options of `weft demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the lab running after the checks until Ctrl-C, to explore it.
    #[arg(long)]
    pub hold: bool,
}

/// Runs the demo (blocking; call it outside any tokio runtime: the lab has its own).
pub fn run(args: &DemoArgs) -> Result<()> {
    watch_signals()?;
    let weft = std::env::current_exe().context("finding the weft binary")?;
    let start = Instant::now();
    step(
        "building the lab: a switch namespace with management (198.51.100.0/24) and underlay (192.0.2.0/24) bridges",
    );
    let mut lab = Lab::new(Options::new(weft))?;
    let result = demo(&mut lab, args, start);
    step("cleaning up: stopping every process, deleting every namespace");
    drop(lab);
    match result {
        Err(e)
            if matches!(
                e.downcast_ref::<weft_lab::LabError>(),
                Some(weft_lab::LabError::Cancelled)
            ) =>
        {
            bail!("interrupted before the demo finished; everything was removed")
        }
        other => {
            if other.is_ok() {
                println!("done in {:.1} s", start.elapsed().as_secs_f64());
            }
            other
        }
    }
}

fn demo(lab: &mut Lab, args: &DemoArgs, start: Instant) -> Result<()> {
    step("starting the controller: weft up (REST and southbound on 198.51.100.1, embedded store)");
    lab.start_controller()?;
    let api = lab.api().endpoint().to_string();
    println!("    REST API {api}");
    for h in seed::HOSTS {
        step(&format!(
            "host {h}: join token from the API, weft host enroll, weft agent (userspace forwarder)"
        ));
        lab.add_host(h, &[0], &[])?;
        let host = lab.host(h);
        println!(
            "    namespace {}, tunnel {}, management {}",
            host.ns.name(),
            host.underlay_ip,
            host.mgmt_ip
        );
    }
    step(
        "creating the seed scenario through the REST API, plugging each VM's TAP into its namespace:",
    );
    println!(
        "    blue: net1 10.1.1.0/24 + net2 10.3.7.0/24 joined by VRF blue; red: net3 10.1.1.0/24 in VRF red"
    );
    let s = seed::build_any_to_any(lab)?;
    for v in &s.vms {
        println!(
            "    {} {:<4} {:<10} on {}  (namespace {})",
            v.name,
            v.tenant,
            v.ip,
            v.host,
            lab.vm_ns(v.name).name()
        );
    }
    step(
        "reachability: every VM pings every other VM's address; a cell says who really received the echoes",
    );
    let (_, text, bad) = s.matrix(lab)?;
    println!();
    print!("{text}");
    println!();
    println!(
        "    ok = answered by the intended VM; --(X) = the echoes reached X instead (same address,"
    );
    println!(
        "    other tenant); -- = nobody. Expected: Blue <-> Blue and Red <-> Red ok, Red and Blue never meet."
    );
    if bad == 0 {
        println!("    RESULT: PASS (30 cells as expected)");
    } else {
        println!("    RESULT: FAIL ({bad} cells marked ! differ from the expectation)");
    }
    let expr = "icmp4 && ip4.dst == 10.3.7.10";
    step(&format!(
        "the path G1 -> G4 as the forwarders run it: weft trace --from g1 '{expr}'"
    ));
    println!();
    print!("{}", lab.cli(&["trace", "--from", "g1", expr])?);
    println!();
    if args.hold {
        let token = lab.api().token().to_string();
        println!("The lab keeps running; in another terminal (as root):");
        println!(
            "  ip netns exec {} ping 10.3.7.10      # G1 -> G4",
            lab.vm_ns("G1").name()
        );
        println!(
            "  ip netns exec {} {} --endpoint {api} --token {token} port list",
            lab.switch.name(),
            std::env::current_exe()?.display()
        );
        println!("  logs and data: {}", lab.dir().display());
        println!("Press Ctrl-C to remove everything.");
        // Ctrl-C is how a held demo ends: not an error.
        while weft_lab::check_cancelled().is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!(
        "lab built and checked in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    if bad > 0 {
        bail!("{bad} reachability cells differ from the expectation");
    }
    Ok(())
}

fn step(s: &str) {
    println!("==> {s}");
}

/// Ctrl-C and SIGTERM cancel the lab's waits; the demo then unwinds and
/// its lab's destructor removes everything.
fn watch_signals() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal thread")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                let _ = ready_tx.send(false);
                return;
            };
            let _ = ready_tx.send(true);
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            eprintln!("\ninterrupted: cleaning up");
            weft_lab::cancel();
        });
    });
    match ready_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(true) => Ok(()),
        _ => bail!("cannot install the Ctrl-C handler"),
    }
}
