//! Rendering API answers: readable tables by default, JSON with `-o json`.

use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;
use weft_model::Kind;

/// Output format of the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// The API's JSON, pretty-printed.
    Json,
}

/// Renders a JSON value compactly for a table cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(", "),
        Value::Object(m) => {
            // Fixed IPs and similar small objects read best as their values.
            if let (Some(ip), 1..=2) = (m.get("ip"), m.len()) {
                return cell(ip);
            }
            if let Some(c) = m.get("cidr") {
                return cell(c);
            }
            serde_json::to_string(v).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

fn table() -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t
}

/// The columns a list of `kind` shows.
pub fn columns(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Project => &["id", "name", "description"],
        Kind::InstancePort => &["id", "name", "mac", "host", "admin_up", "status"],
        Kind::Interface => &["id", "name", "parent", "vlan", "port"],
        Kind::L2Network => &["id", "name", "vni", "subnets", "provider"],
        Kind::L3vpn => &[
            "id",
            "name",
            "route_distinguisher",
            "import_targets",
            "export_targets",
            "vni",
            "anycast_mode",
        ],
        Kind::SecurityGroup => &["id", "name", "stateful", "rules"],
        Kind::SiteLink => &[
            "id",
            "name",
            "site",
            "remote_site",
            "local_endpoint",
            "remote_endpoint",
        ],
        Kind::ServicePort => &[
            "id",
            "name",
            "interface",
            "service",
            "service_kind",
            "fixed_ips",
            "role",
        ],
    }
}

/// Prints a list of objects.
pub fn print_list(format: Format, kind: Kind, items: &[Value]) {
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(items).unwrap_or_default()
        );
        return;
    }
    let cols = columns(kind);
    let mut t = table();
    t.set_header(cols.iter().copied());
    for it in items {
        t.add_row(cols.iter().map(|c| {
            if *c == "rules" {
                it[c].as_array().map_or(0, Vec::len).to_string()
            } else {
                cell(&it[c])
            }
        }));
    }
    println!("{t}");
}

/// Prints one object as field/value rows.
pub fn print_object(format: Format, v: &Value) {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    let mut t = table();
    t.set_header(["field", "value"]);
    if let Value::Object(m) = v {
        for (k, val) in m {
            let text = match val {
                Value::Array(a) if a.iter().any(Value::is_object) => a
                    .iter()
                    .map(|x| serde_json::to_string(x).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => cell(other),
            };
            t.add_row([k.clone(), text]);
        }
    }
    println!("{t}");
}
