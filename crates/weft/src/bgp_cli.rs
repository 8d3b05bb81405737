//! `weft bgp`: the controller's BGP speaker through `/v1/bgp`: its
//! configuration (local AS, router id, listen address), peers, and the
//! routes it advertises and learns.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::{Value, json};
use weft_client::{Client, Method};

use crate::Opts;
use crate::output::{Format, cell, print_object};

/// BGP commands.
#[derive(Subcommand, Debug)]
pub enum BgpCmd {
    /// Configuration, peer status and route counts.
    Show,
    /// Set the local AS and router id (and listen address); peers are kept.
    Set(SetArgs),
    /// Add or remove peers.
    Peer {
        #[command(subcommand)]
        verb: PeerVerb,
    },
    /// Routes advertised to peers and routes learned from them.
    Routes,
    /// Stop the speaker and forget its configuration.
    Disable,
}

/// `bgp set`.
#[derive(Args, Debug)]
pub struct SetArgs {
    /// Our AS number (1-4294967295).
    #[arg(long)]
    pub local_as: u64,
    /// Our router id (an IPv4 address).
    #[arg(long)]
    pub router_id: String,
    /// Accept sessions on IP or IP:PORT (default: keep the current one).
    #[arg(long, conflicts_with = "no_listen")]
    pub listen: Option<String>,
    /// Do not accept sessions; only connect out.
    #[arg(long)]
    pub no_listen: bool,
}

/// `bgp peer` verbs.
#[derive(Subcommand, Debug)]
pub enum PeerVerb {
    /// Add a peer.
    Add {
        /// The peer's address.
        address: String,
        /// The peer's AS.
        #[arg(long)]
        remote_as: u64,
        /// TCP port to connect to.
        #[arg(long)]
        port: Option<u64>,
        /// Hold time in seconds (0, or at least 3).
        #[arg(long)]
        hold_time: Option<u64>,
        /// Seconds between connection attempts.
        #[arg(long)]
        connect_retry: Option<u64>,
        /// Only wait for the peer to connect.
        #[arg(long)]
        passive: bool,
    },
    /// Remove a peer (its session ends with a Cease NOTIFICATION).
    #[command(visible_alias = "rm")]
    Remove {
        /// The peer's address.
        address: String,
    },
}

fn table() -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t
}

fn print_status(f: Format, v: &Value) {
    if f == Format::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    let cfg = &v["config"];
    if cfg.is_null() {
        println!("BGP is not configured (weft bgp set --local-as N --router-id IP)");
        return;
    }
    let running = if v["running"].as_bool() == Some(true) {
        "running".to_string()
    } else {
        format!("not running: {}", cell(&v["error"]))
    };
    print_object(
        f,
        &json!({
            "local_as": cfg["local_as"],
            "router_id": cfg["router_id"],
            "listen": cfg["listen"],
            "speaker": running,
            "revision": v["revision"],
            "routes exported": v["exported"],
            "routes imported": v["imported"],
            "routes installed": v["installed"],
        }),
    );
    let mut t = table();
    t.set_header([
        "peer",
        "remote AS",
        "state",
        "uptime",
        "in",
        "out",
        "last error",
    ]);
    for p in v["peers"].as_array().into_iter().flatten() {
        let uptime = p["uptime_seconds"]
            .as_u64()
            .map(|s| format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60))
            .unwrap_or_default();
        t.add_row([
            cell(&p["address"]),
            cell(&p["remote_as"]),
            cell(&p["state"]),
            uptime,
            cell(&p["prefixes_in"]),
            cell(&p["prefixes_out"]),
            cell(&p["last_error"]),
        ]);
    }
    println!("{t}");
    if let Some(problems) = v["export_problems"].as_array()
        && !problems.is_empty()
    {
        println!("not advertised:");
        for p in problems {
            println!("  {}", cell(p));
        }
    }
}

fn print_routes(f: Format, v: &Value) {
    if f == Format::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    let mut t = table();
    t.set_header([
        "exported",
        "l3vpn",
        "rd",
        "label/vni",
        "next hop",
        "route targets",
        "from",
    ]);
    for r in v["exported"].as_array().into_iter().flatten() {
        let route = &r["route"];
        t.add_row([
            cell(&route["prefix"]),
            cell(&r["vrf"]),
            cell(&route["rd"]),
            cell(&route["label_or_vni"]),
            cell(&route["next_hop"]),
            cell(&route["route_targets"]),
            cell(&r["source"]),
        ]);
    }
    println!("{t}");
    let mut t = table();
    t.set_header([
        "imported",
        "rd",
        "label/vni",
        "next hop",
        "route targets",
        "peer",
        "installed in",
    ]);
    for r in v["imported"].as_array().into_iter().flatten() {
        let route = &r["route"]["route"];
        let into = match r["ignored"].as_str() {
            Some(why) => format!("ignored: {why}"),
            None if r["vrfs"].as_array().is_some_and(|a| a.is_empty()) => {
                "no l3vpn imports its targets".into()
            }
            None => cell(&r["vrfs"]),
        };
        t.add_row([
            cell(&route["prefix"]),
            cell(&route["rd"]),
            cell(&route["label_or_vni"]),
            cell(&route["next_hop"]),
            cell(&route["route_targets"]),
            format!(
                "{} AS {}{}",
                cell(&r["route"]["peer"]),
                cell(&r["route"]["peer_as"]),
                if r["route"]["stale"].as_bool() == Some(true) {
                    " (stale)"
                } else {
                    ""
                }
            ),
            into,
        ]);
    }
    println!("{t}");
}

async fn call(
    c: &Client,
    method: Method,
    path: &str,
    body: Option<&Value>,
    if_match: Option<u64>,
) -> Result<Value> {
    let (_, _, v) = c.request(method, path, &[], body, if_match).await?;
    Ok(v)
}

/// Runs a `weft bgp` command.
pub async fn run(opts: &Opts, cmd: &BgpCmd) -> Result<()> {
    let c = crate::cli::client(opts)?;
    let f = opts.output;
    match cmd {
        BgpCmd::Show => print_status(f, &call(&c, Method::GET, "/v1/bgp", None, None).await?),
        BgpCmd::Routes => print_routes(
            f,
            &call(&c, Method::GET, "/v1/bgp/routes", None, None).await?,
        ),
        BgpCmd::Set(a) => {
            // Read, change, write back with If-Match so a concurrent
            // change is not silently undone.
            let cur = call(&c, Method::GET, "/v1/bgp", None, None).await?;
            let cfg = &cur["config"];
            let listen = if a.no_listen {
                Value::Null
            } else if let Some(l) = &a.listen {
                json!(l)
            } else {
                cfg["listen"].clone()
            };
            let peers = cfg["peers"].as_array().cloned().unwrap_or_default();
            let body = json!({
                "local_as": a.local_as,
                "router_id": a.router_id,
                "listen": listen,
                "peers": peers,
            });
            let rev = cur["revision"].as_u64().filter(|r| *r > 0);
            let v = call(&c, Method::PUT, "/v1/bgp", Some(&body), rev)
                .await
                .context("setting the BGP configuration")?;
            print_status(f, &v);
        }
        BgpCmd::Peer { verb } => match verb {
            PeerVerb::Add {
                address,
                remote_as,
                port,
                hold_time,
                connect_retry,
                passive,
            } => {
                let mut body =
                    json!({"address": address, "remote_as": remote_as, "passive": passive});
                for (k, v) in [
                    ("port", port),
                    ("hold_time", hold_time),
                    ("connect_retry", connect_retry),
                ] {
                    if let Some(v) = v {
                        body[k] = json!(v);
                    }
                }
                let v = call(&c, Method::POST, "/v1/bgp/peers", Some(&body), None).await?;
                print_status(f, &v);
            }
            PeerVerb::Remove { address } => {
                if address.contains('/') {
                    bail!("peer address {address:?} is not an IP address");
                }
                let v = call(
                    &c,
                    Method::DELETE,
                    &format!("/v1/bgp/peers/{address}"),
                    None,
                    None,
                )
                .await?;
                print_status(f, &v);
            }
        },
        BgpCmd::Disable => {
            call(&c, Method::DELETE, "/v1/bgp", None, None).await?;
            if f == Format::Table {
                println!("BGP speaker stopped and its configuration removed");
            }
        }
    }
    Ok(())
}
