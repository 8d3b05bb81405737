//! The forwarder backend takes whole views and never lets a bad one take the
//! dataplane down: a view that does not decode, or whose program does not
//! load, is refused with an error and the previous program keeps running.
//! (Views with local ports, TAPs and real traffic are tested in
//! `weft-dataplane`'s namespace tests, through the same `apply_records`.)

use std::collections::BTreeMap;

use weft_agent::Backend;
use weft_agent::forwarding::ForwarderBackend;
use weft_dataplane::HostConfig;

/// One record (a compiler fragment as JSON): a switch with one flow sending
/// to `port`, declared or not.
fn record(vni: u32, port: &str, declare: bool) -> Vec<u8> {
    let ports = if declare {
        format!(
            r#"[{{"name": "{port}", "datapath": "ls:n", "binding": "Internal", "mac": null, "ips": []}}]"#
        )
    } else {
        "[]".to_string()
    };
    format!(
        r#"{{
        "datapaths": [{{"name": "ls:n", "kind": "switch", "vni": {vni}, "router_macs": []}}],
        "flows": [{{"dp": "ls:n", "table": "ls_in_l2_lkup", "scope": "All",
                   "flow": {{"priority": 1, "match": {{}}, "actions": [{{"output": "{port}"}}],
                            "origin": {{"kind": "test", "id": "t", "detail": ""}}}}}}],
        "ports": {ports},
        "flood_groups": [], "ecmp_groups": [], "address_sets": [],
        "tunnel_entries": [], "services": []
    }}"#
    )
    .into_bytes()
}

#[test]
fn bad_views_are_refused_and_the_old_program_runs_on() {
    let mut b =
        ForwarderBackend::with_config("host-t", HostConfig::new("127.0.0.1:0".parse().unwrap()))
            .expect("forwarder starts");
    let m = b.monitor();
    b.apply(&BTreeMap::new()).expect("the empty view");
    let good: BTreeMap<String, Vec<u8>> = [("net/n".to_string(), record(5001, "p1", true))].into();
    b.apply(&good).expect("a loadable view");
    let running = m.stats().pipeline.generation;
    let swaps = m.stats().pipeline.swaps;

    // Does not decode.
    let garbage: BTreeMap<String, Vec<u8>> = [("net/n".to_string(), b"{not json".to_vec())].into();
    let e = b.apply(&garbage).unwrap_err();
    assert!(format!("{e:#}").contains("does not decode"), "{e:#}");
    // Decodes, but the program refers to a port nobody declared.
    let dangling: BTreeMap<String, Vec<u8>> =
        [("net/n".to_string(), record(5001, "ghost", false))].into();
    let e = b.apply(&dangling).unwrap_err();
    assert!(format!("{e:#}").contains("ghost"), "{e:#}");
    // A VNI beyond 24 bits.
    let wide: BTreeMap<String, Vec<u8>> =
        [("net/n".to_string(), record(1 << 24, "p1", true))].into();
    assert!(b.apply(&wide).is_err());

    let s = m.stats().pipeline;
    assert_eq!(s.generation, running, "the previous program still runs");
    assert_eq!(s.swaps, swaps, "nothing was swapped in");
    let counters = b.counters();
    assert!(
        counters.iter().any(|(k, _)| k == "program.generation"),
        "{counters:?}"
    );
    // The same view again changes nothing; a new good one is taken.
    b.apply(&good).expect("the running view again");
    assert_eq!(m.stats().pipeline.generation, running);
    let other: BTreeMap<String, Vec<u8>> = [("net/n".to_string(), record(5002, "p1", true))].into();
    b.apply(&other).expect("a loadable view after refusals");
    assert_ne!(m.stats().pipeline.generation, running);
}
