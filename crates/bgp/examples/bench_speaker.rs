//! Benchmark helper for `bench/bgp/run.sh`.
//!
//! `bench_speaker frr-networks N` prints the FRR `network` statements of the
//! benchmark's N VPNv4 routes; `bench_speaker run LOCAL_AS ROUTER_ID PEER
//! PEER_AS NEXT_HOP N` runs a passive speaker exporting the same N routes
//! until killed. Both use [`route`], so every sender advertises the same set.

use std::net::{IpAddr, Ipv4Addr};

use weft_bgp::{PeerConfig, Speaker, SpeakerConfig, VpnRoute};

/// The i-th route: RD 65000:(1 + i % 100), 10.a.b.c/32, label 16 + i % 1000,
/// RT 65000:1.
fn route(i: u32) -> (String, String, u32) {
    let addr = Ipv4Addr::from(0x0a00_0000 | (i + 1));
    (
        format!("65000:{}", 1 + i % 100),
        format!("{addr}/32"),
        16 + i % 1000,
    )
}

fn usage() -> ! {
    eprintln!(
        "usage: bench_speaker frr-networks N | run LOCAL_AS ROUTER_ID PEER PEER_AS NEXT_HOP N"
    );
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("frr-networks") => {
            let n: u32 = arg(&args, 2);
            let mut out = String::new();
            for i in 0..n {
                let (rd, prefix, label) = route(i);
                out.push_str(&format!(
                    "  network {prefix} rd {rd} label {label} route-map SETRT\n"
                ));
            }
            print!("{out}");
        }
        Some("run") => {
            let local_as: u32 = arg(&args, 2);
            let router_id: Ipv4Addr = arg(&args, 3);
            let peer: IpAddr = arg(&args, 4);
            let peer_as: u32 = arg(&args, 5);
            let next_hop: IpAddr = arg(&args, 6);
            let n: u32 = arg(&args, 7);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let handle = Speaker::start(SpeakerConfig {
                    local_as,
                    router_id,
                    listen: Some("0.0.0.0:179".parse().expect("address")),
                    peers: vec![PeerConfig {
                        passive: true,
                        ..PeerConfig::new(peer, peer_as)
                    }],
                })
                .expect("speaker start");
                let routes = (0..n)
                    .map(|i| {
                        let (rd, prefix, label) = route(i);
                        VpnRoute::vpnv4(
                            rd.parse().expect("rd"),
                            prefix.parse().expect("prefix"),
                            label,
                            next_hop,
                            vec!["65000:1".parse().expect("rt")],
                        )
                    })
                    .collect();
                handle.set_exports(routes).expect("exports");
                eprintln!("exporting {n} routes to {peer}");
                std::future::pending::<()>().await;
            });
        }
        _ => usage(),
    }
}
