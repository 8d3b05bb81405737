//! Data-driven compiler scenarios (STYLE.md): each folder under
//! `tests/scenarios/` holds
//!
//! - `description.txt`: what the scenario is, with an ASCII diagram;
//! - `intent.json`: the steps that build it (the same commands the API
//!   issues), with `"$name"` references to earlier objects;
//! - `checks.txt`: traces to run and what their verdict must say;
//! - `expected.txt`: the full rendered traces, compared exactly.
//!
//! `WEFT_REGEN=1 cargo test -p weft-compiler --test scenarios` rewrites
//! `expected.txt`; review the diff. The checks are asserted either way.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use weft_compiler::{Compiler, trace};
use weft_model::{Command, CountingIds, Id, Intent, Kind, Object, PortStatus, Spec};

struct World {
    intent: Intent,
    ids: CountingIds,
    refs: BTreeMap<String, Id>,
    hosts: BTreeMap<String, IpAddr>,
}

impl World {
    fn resolve(&self, v: &Value) -> Value {
        match v {
            Value::String(s) if s.starts_with('$') => {
                let r = &s[1..];
                if let Some((name, rest)) = r.split_once("/subnet/") {
                    let id = self
                        .refs
                        .get(name)
                        .unwrap_or_else(|| panic!("unknown ref {name}"));
                    let n: usize = rest.parse().expect("subnet index");
                    return Value::String(self.intent.l2_networks()[id].subnets[n].id.to_string());
                }
                Value::String(
                    self.refs
                        .get(r)
                        .unwrap_or_else(|| panic!("unknown ref {r}"))
                        .to_string(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.resolve(x)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), self.resolve(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn step(&mut self, compiler: &mut Compiler, step: &Value) {
        let step = self.resolve(step);
        if let Some(h) = step.get("hosts") {
            for (name, ip) in h.as_object().expect("hosts map") {
                self.hosts
                    .insert(name.clone(), ip.as_str().unwrap().parse().unwrap());
            }
            return;
        }
        let cmd = if let Some(kind) = step.get("create").and_then(Value::as_str) {
            let kind = Kind::from_name(kind).unwrap_or_else(|| panic!("unknown kind {kind}"));
            let body = step
                .get("body")
                .cloned()
                .unwrap_or(Value::Object(Default::default()));
            Command::Create {
                project: step.get("project").and_then(Value::as_str).map(Id::from),
                spec: Spec::parse(kind, body.to_string().as_bytes())
                    .unwrap_or_else(|e| panic!("{step}: {e}")),
            }
        } else if let Some(kind) = step.get("update").and_then(Value::as_str) {
            Command::Update {
                kind: Kind::from_name(kind).unwrap(),
                id: Id::from(step["id"].as_str().unwrap()),
                patch: step["patch"].clone(),
                if_match: None,
            }
        } else if let Some(kind) = step.get("delete").and_then(Value::as_str) {
            Command::Delete {
                kind: Kind::from_name(kind).unwrap(),
                id: Id::from(step["id"].as_str().unwrap()),
                if_match: None,
            }
        } else if let Some(port) = step.get("port_status").and_then(Value::as_str) {
            Command::SetPortStatus {
                id: Id::from(port),
                status: if step["status"] == "up" {
                    PortStatus::Up
                } else {
                    PortStatus::Down
                },
            }
        } else {
            panic!("unknown step {step}");
        };
        let applied = self
            .intent
            .apply(cmd, &mut self.ids)
            .unwrap_or_else(|e| panic!("step {step} refused: {e}"));
        if let (Some(r), Some(obj)) = (step.get("ref").and_then(Value::as_str), &applied.object) {
            self.refs.insert(r.to_string(), obj.id().clone());
            // A port created with a binding also names its service port `<ref>.sp`.
            if let Object::InstancePort(p) = obj
                && let Some(iface) = self.intent.children_of(p.id.as_str()).next()
                && let Some(sp) = self.intent.service_port_of_interface(iface.id.as_str())
            {
                self.refs.insert(format!("{r}.sp"), sp.id.clone());
            }
        }
        compiler.apply(&self.intent, &applied.changes);
        // Incremental compilation must equal a full one after every step.
        let full = Compiler::full(&self.intent);
        assert_eq!(
            full.fragments(),
            compiler.fragments(),
            "incremental != full after step {step}"
        );
    }
}

/// Resolves `$ref` in a trace source or expression.
fn subst(w: &World, s: &str) -> String {
    let mut out = s.to_string();
    let mut names: Vec<&String> = w.refs.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for n in names {
        out = out.replace(&format!("${n}"), w.refs[n].as_str());
    }
    out
}

fn run_scenario(dir: &Path) -> Vec<String> {
    let steps: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("intent.json")).unwrap()).unwrap();
    let mut w = World {
        intent: Intent::new(),
        ids: CountingIds::default(),
        refs: BTreeMap::new(),
        hosts: BTreeMap::new(),
    };
    let mut compiler = Compiler::default();
    let mut failures = Vec::new();
    let mut rendered = String::new();
    let checks = std::fs::read_to_string(dir.join("checks.txt")).unwrap();
    let mut steps_iter = steps.iter();
    for line in checks.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // `apply N` runs the next N intent steps (so checks can interleave with changes).
        if let Some(n) = line.strip_prefix("apply ") {
            let n: usize = if n == "all" {
                usize::MAX
            } else {
                n.parse().unwrap()
            };
            for _ in 0..n {
                match steps_iter.next() {
                    Some(s) => w.step(&mut compiler, s),
                    None => break,
                }
            }
            rendered.push_str(&format!("### {line}\n\n"));
            continue;
        }
        let by_ip: BTreeMap<IpAddr, String> =
            w.hosts.iter().map(|(h, ip)| (*ip, h.clone())).collect();
        let parts: Vec<&str> = line.split(" | ").collect();
        if parts[0].starts_with("spread ") {
            // spread FROM | EXPR with {p} | lo..hi | N distinct destinations
            let from = subst(&w, parts[0].trim_start_matches("spread ").trim());
            let (lo, hi) = parts[2].split_once("..").unwrap();
            let (lo, hi): (u16, u16) = (lo.trim().parse().unwrap(), hi.trim().parse().unwrap());
            let want: usize = parts[3].trim().parse().unwrap();
            let mut seen = BTreeSet::new();
            for p in lo..hi {
                let expr = subst(&w, &parts[1].replace("{p}", &p.to_string()));
                let r = trace::trace(&compiler, &w.intent, &w.hosts, &by_ip, &from, &expr)
                    .unwrap_or_else(|e| panic!("{line}: {e}"));
                for v in &r.verdicts {
                    if v.starts_with("delivered to ") {
                        seen.insert(v.clone());
                    }
                }
            }
            rendered.push_str(&format!("### {line}\n{} destinations:\n", seen.len()));
            for s in &seen {
                rendered.push_str(&format!("  {s}\n"));
            }
            rendered.push('\n');
            if seen.len() != want {
                failures.push(format!(
                    "{}: {line}: {} destinations, want {want}: {seen:?}",
                    dir.display(),
                    seen.len()
                ));
            }
            continue;
        }
        let from = subst(&w, parts[0].trim());
        let expr = subst(&w, parts[1].trim());
        let want = parts.get(2).map(|s| s.trim()).unwrap_or("");
        let report = trace::trace(&compiler, &w.intent, &w.hosts, &by_ip, &from, &expr)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let text = report.to_string();
        rendered.push_str(&format!("### {line}\n{text}\n"));
        let verdicts = report.verdicts.join("\n");
        // `step:` checks the whole trace, `!` negates.
        let (haystack, want) = match want.strip_prefix("step:") {
            Some(rest) => (text.as_str(), rest.trim()),
            None => (verdicts.as_str(), want),
        };
        let ok = match want.strip_prefix("!") {
            Some(neg) => !haystack.contains(&subst(&w, neg.trim())),
            None => haystack.contains(&subst(&w, want)),
        };
        if !ok {
            failures.push(format!(
                "{}: {line}\n  verdicts: {verdicts}\n{text}",
                dir.display()
            ));
        }
    }
    for s in steps_iter {
        w.step(&mut compiler, s);
    }
    let expected_path = dir.join("expected.txt");
    if std::env::var_os("WEFT_REGEN").is_some() {
        std::fs::write(&expected_path, &rendered).unwrap();
    } else {
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != rendered {
            failures.push(format!(
                "{}: output differs from expected.txt (run with WEFT_REGEN=1 and review the diff)\n--- got:\n{rendered}",
                dir.display()
            ));
        }
    }
    failures
}

fn scenario_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn scenarios() {
    let dirs = scenario_dirs();
    assert!(
        dirs.len()
            >= std::env::var("WEFT_MIN_SCENARIOS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(6),
        "expected at least 6 scenarios, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for d in &dirs {
        assert!(
            d.join("description.txt").exists(),
            "{} has no description.txt",
            d.display()
        );
        failures.extend(run_scenario(d));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
