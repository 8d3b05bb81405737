//! Authorization by a policy file: one rule per action.
//!
//! A rule is a small boolean expression, in the spirit of OpenStack's
//! oslo.policy:
//!
//! ```text
//! expr  := term ("or" term)*
//! term  := factor ("and" factor)*
//! factor:= "not" factor | "(" expr ")" | atom
//! atom  := "role:<name>"        the caller holds the role
//!        | "rule:<name>"        another rule of the file
//!        | "project_id:%(project_id)s"   the caller's project owns the target
//!        | "@"                  always
//!        | "!"                  never
//! ```
//!
//! The defaults ([`DEFAULT_POLICY`]) are shipped in the binary and written
//! next to the data directory on first start; an operator edits that file
//! to change who may do what, e.g. to let a VNF manager's role create
//! provider networks (`create_provider_network`).

use std::collections::BTreeMap;
use std::fmt;

use weft_model::Id;

/// The policy shipped with Weft, documented rule by rule.
pub const DEFAULT_POLICY: &str = r#"# Weft API policy: one rule per action.
#
# Syntax: role:NAME, rule:NAME, project_id:%(project_id)s (the caller's
# project owns the target), @ (always), ! (never), combined with and, or,
# not and parentheses. Callers never see other projects' objects: those
# answer 404 whatever the policy says.

# Building blocks.
admin: "role:admin"
owner: "project_id:%(project_id)s"
admin_or_owner: "rule:admin or rule:owner"
# Members of the owning project may change things; readers only read.
writer: "rule:admin or (rule:owner and role:member)"

# Projects are managed by administrators; members see their own.
list_projects: "rule:admin_or_owner"
get_project: "rule:admin_or_owner"
create_project: "rule:admin"
update_project: "rule:admin"
delete_project: "rule:admin"

# Per-kind defaults for instance-ports, interfaces, l2-networks, l3vpns,
# security-groups, site-links and service-ports.
get: "rule:admin_or_owner"
list: "rule:admin_or_owner"
create: "rule:writer"
update: "rule:writer"
delete: "rule:writer"

# Setting or changing an instance port's host binding (the compute side).
set_port_host: "rule:writer"

# Creating or updating a network with a provider mapping (physical network,
# segmentation id). Checked in addition to create/update. The seed
# "Programmable Provisioning of Provider Networks" asks for admin_or_owner
# by default, so a VNF manager without admin rights may do it; restrict it
# with e.g. "rule:admin or role:vnfm".
create_provider_network: "rule:admin_or_owner"
update_provider_network: "rule:admin_or_owner"

# API tokens.
create_token: "rule:admin"
list_tokens: "rule:admin"
delete_token: "rule:admin"

# Hosts (agents) and the one-time join tokens they enrol with.
list_hosts: "rule:admin"
revoke_host: "rule:admin"
delete_host: "rule:admin"
list_join_tokens: "rule:admin"
create_join_token: "rule:admin"
delete_join_token: "rule:admin"

# Tracing a packet through the compiled pipelines.
trace: "rule:admin_or_owner"

# The BGP speaker: reading its configuration, peers and routes, and
# changing them (local AS, router id, peers).
bgp_get: "rule:admin"
bgp_update: "rule:admin"

# Hosts' tunnel (VXLAN endpoint) addresses, set by hand until agents
# report them.
get_host_tunnel: "rule:admin"
set_host_tunnel: "rule:admin"
"#;

/// A parsed rule expression.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    Always,
    Never,
    Role(String),
    Rule(String),
    Owner,
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token id (for logs).
    pub token: String,
    /// The caller's project; `None` for tokens not bound to a project.
    pub project: Option<Id>,
    /// The caller's roles.
    pub roles: Vec<String>,
}

impl Caller {
    /// True if the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// A policy file that failed to load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy: {0}")]
pub struct PolicyError(pub String);

/// A loaded, checked policy.
#[derive(Clone, Debug)]
pub struct Policy {
    rules: BTreeMap<String, Expr>,
}

impl Policy {
    /// The shipped default policy.
    pub fn default_policy() -> Self {
        Self::parse(DEFAULT_POLICY).expect("the default policy parses")
    }

    /// Parses a policy file (YAML mapping of action → rule).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let raw: BTreeMap<String, String> = serde_yaml_ng::from_str(text)
            .map_err(|e| PolicyError(format!("not a YAML mapping of action: \"rule\": {e}")))?;
        let mut rules = BTreeMap::new();
        for (name, text) in raw {
            let expr = parse_expr(&text).map_err(|e| PolicyError(format!("rule {name}: {e}")))?;
            rules.insert(name, expr);
        }
        let policy = Policy { rules };
        // Every rule:X must exist and references must not loop.
        for (name, expr) in &policy.rules {
            policy
                .check_refs(expr, &mut vec![name.clone()])
                .map_err(|e| PolicyError(format!("rule {name}: {e}")))?;
        }
        // Fill in defaults for actions the file does not mention, so an
        // operator's file only needs the rules it changes.
        let defaults = Self::parse_defaults();
        let mut merged = defaults;
        merged.extend(policy.rules);
        Ok(Policy { rules: merged })
    }

    fn parse_defaults() -> BTreeMap<String, Expr> {
        let raw: BTreeMap<String, String> =
            serde_yaml_ng::from_str(DEFAULT_POLICY).expect("default policy is YAML");
        raw.into_iter()
            .map(|(k, v)| (k, parse_expr(&v).expect("default rules parse")))
            .collect()
    }

    fn check_refs(&self, e: &Expr, stack: &mut Vec<String>) -> Result<(), String> {
        match e {
            Expr::Rule(r) => {
                if stack.contains(r) {
                    return Err(format!(
                        "rule:{r} refers back to itself ({})",
                        stack.join(" → ")
                    ));
                }
                let Some(target) = self
                    .rules
                    .get(r)
                    .cloned()
                    .or_else(|| Self::parse_defaults().get(r).cloned())
                else {
                    return Err(format!("rule:{r} is not defined"));
                };
                stack.push(r.clone());
                self.check_refs(&target, stack)?;
                stack.pop();
                Ok(())
            }
            Expr::Not(a) => self.check_refs(a, stack),
            Expr::And(a, b) | Expr::Or(a, b) => {
                self.check_refs(a, stack)?;
                self.check_refs(b, stack)
            }
            _ => Ok(()),
        }
    }

    /// The rule name used for an action on a kind: the specific rule if the
    /// file has one (`create_l2_network`), else the generic one (`create`).
    pub fn rule_for(&self, action: &str, kind_snake: &str) -> String {
        let specific = format!("{action}_{kind_snake}");
        if self.rules.contains_key(&specific) {
            specific
        } else {
            action.to_string()
        }
    }

    /// Decides whether `caller` may perform `action` on an object owned by
    /// `target_project`. Unknown actions are denied.
    pub fn allows(&self, action: &str, caller: &Caller, target_project: Option<&Id>) -> bool {
        match self.rules.get(action) {
            Some(e) => self.eval(e, caller, target_project, 0),
            None => false,
        }
    }

    fn eval(&self, e: &Expr, c: &Caller, target: Option<&Id>, depth: usize) -> bool {
        if depth > 32 {
            return false;
        }
        match e {
            Expr::Always => true,
            Expr::Never => false,
            Expr::Role(r) => c.has_role(r),
            Expr::Owner => matches!((&c.project, target), (Some(a), Some(b)) if a == b),
            Expr::Rule(r) => self
                .rules
                .get(r)
                .is_some_and(|x| self.eval(x, c, target, depth + 1)),
            Expr::Not(a) => !self.eval(a, c, target, depth + 1),
            Expr::And(a, b) => {
                self.eval(a, c, target, depth + 1) && self.eval(b, c, target, depth + 1)
            }
            Expr::Or(a, b) => {
                self.eval(a, c, target, depth + 1) || self.eval(b, c, target, depth + 1)
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Always => f.write_str("@"),
            Expr::Never => f.write_str("!"),
            Expr::Role(r) => write!(f, "role:{r}"),
            Expr::Rule(r) => write!(f, "rule:{r}"),
            Expr::Owner => f.write_str("project_id:%(project_id)s"),
            Expr::Not(a) => write!(f, "not {a}"),
            Expr::And(a, b) => write!(f, "({a} and {b})"),
            Expr::Or(a, b) => write!(f, "({a} or {b})"),
        }
    }
}

/// The owner term, protected from the parenthesis splitting of the tokenizer.
const OWNER_TERM: &str = "project_id:%(project_id)s";
const OWNER_TOKEN: &str = "\u{1}owner";

fn tokenize(s: &str) -> Vec<String> {
    let s = s.replace(OWNER_TERM, &format!(" {OWNER_TOKEN} "));
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '(' | ')' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(ch.to_string());
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn parse_expr(s: &str) -> Result<Expr, String> {
    let toks = tokenize(s);
    if toks.is_empty() {
        return Err("empty rule (use \"@\" for always or \"!\" for never)".into());
    }
    let mut pos = 0;
    let e = parse_or(&toks, &mut pos)?;
    if pos != toks.len() {
        return Err(format!("unexpected {:?} at word {}", toks[pos], pos + 1));
    }
    Ok(e)
}

fn parse_or(t: &[String], pos: &mut usize) -> Result<Expr, String> {
    let mut left = parse_and(t, pos)?;
    while t.get(*pos).is_some_and(|w| w == "or") {
        *pos += 1;
        let right = parse_and(t, pos)?;
        left = Expr::Or(Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn parse_and(t: &[String], pos: &mut usize) -> Result<Expr, String> {
    let mut left = parse_factor(t, pos)?;
    while t.get(*pos).is_some_and(|w| w == "and") {
        *pos += 1;
        let right = parse_factor(t, pos)?;
        left = Expr::And(Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn parse_factor(t: &[String], pos: &mut usize) -> Result<Expr, String> {
    let Some(w) = t.get(*pos) else {
        return Err("rule ends too early".into());
    };
    *pos += 1;
    match w.as_str() {
        "not" => Ok(Expr::Not(Box::new(parse_factor(t, pos)?))),
        "(" => {
            let e = parse_or(t, pos)?;
            if t.get(*pos).map(String::as_str) != Some(")") {
                return Err("missing ')'".into());
            }
            *pos += 1;
            Ok(e)
        }
        "@" => Ok(Expr::Always),
        "!" => Ok(Expr::Never),
        OWNER_TOKEN => Ok(Expr::Owner),
        other => {
            if let Some(r) = other.strip_prefix("role:").filter(|r| !r.is_empty()) {
                Ok(Expr::Role(r.to_string()))
            } else if let Some(r) = other.strip_prefix("rule:").filter(|r| !r.is_empty()) {
                Ok(Expr::Rule(r.to_string()))
            } else {
                Err(format!(
                    "unknown term {other:?}: expected role:NAME, rule:NAME, project_id:%(project_id)s, @ or !"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(project: Option<&str>, roles: &[&str]) -> Caller {
        Caller {
            token: "t".into(),
            project: project.map(Id::from),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn default_policy_decisions() {
        let p = Policy::default_policy();
        let admin = caller(None, &["admin"]);
        let member = caller(Some("blue"), &["member"]);
        let reader = caller(Some("blue"), &["reader"]);
        let blue = Id::from("blue");
        let red = Id::from("red");
        let cases = [
            ("create", &admin, Some(&red), true),
            ("create", &member, Some(&blue), true),
            ("create", &member, Some(&red), false),
            ("create", &reader, Some(&blue), false),
            ("get", &reader, Some(&blue), true),
            ("get", &reader, Some(&red), false),
            ("create_project", &member, None, false),
            ("create_project", &admin, None, true),
            ("create_provider_network", &member, Some(&blue), true),
            ("create_provider_network", &member, Some(&red), false),
            ("no_such_action", &admin, None, false),
        ];
        for (action, c, target, want) in cases {
            assert_eq!(
                p.allows(action, c, target),
                want,
                "{action} {c:?} {target:?}"
            );
        }
    }

    #[test]
    fn an_operator_file_overrides_one_rule() {
        let p = Policy::parse("create_provider_network: \"rule:admin or role:vnfm\"\n").unwrap();
        let blue = Id::from("blue");
        assert!(!p.allows(
            "create_provider_network",
            &caller(Some("blue"), &["member"]),
            Some(&blue)
        ));
        assert!(p.allows(
            "create_provider_network",
            &caller(Some("blue"), &["member", "vnfm"]),
            Some(&blue)
        ));
        // The rest keeps its defaults.
        assert!(p.allows("create", &caller(Some("blue"), &["member"]), Some(&blue)));
    }

    #[test]
    fn bad_files_are_refused_with_the_rule_named() {
        for (text, words) in [
            ("create: \"role:\"\n", "unknown term"),
            ("create: \"rule:nope\"\n", "rule:nope is not defined"),
            ("a: \"rule:b\"\nb: \"rule:a\"\n", "refers back"),
            ("create: \"(role:admin\"\n", "missing ')'"),
            ("create: \"role:a or\"\n", "ends too early"),
            ("- just a list\n", "not a YAML mapping"),
            ("create: \"\"\n", "empty rule"),
        ] {
            let e = Policy::parse(text).unwrap_err();
            assert!(e.0.contains(words), "{text}: {e}");
        }
    }

    #[test]
    fn owner_term_parses_inside_parentheses() {
        let p = Policy::parse("x: \"(project_id:%(project_id)s and role:member)\"\n").unwrap();
        let blue = Id::from("blue");
        assert!(p.allows("x", &caller(Some("blue"), &["member"]), Some(&blue)));
        assert!(!p.allows("x", &caller(Some("red"), &["member"]), Some(&blue)));
    }

    #[test]
    fn precedence_and_not() {
        let p = Policy::parse("x: \"role:a or role:b and not role:c\"\n").unwrap();
        assert!(p.allows("x", &caller(None, &["a", "c"]), None));
        assert!(p.allows("x", &caller(None, &["b"]), None));
        assert!(!p.allows("x", &caller(None, &["b", "c"]), None));
    }
}
