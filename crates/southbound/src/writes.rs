//! Host names and the writes a host may send, parsed from wire messages into checked types.
//! Whether the host owns what it writes (its ports) is for the controller to check; this
//! module checks shape, bounds and the identity fields.

use std::net::IpAddr;

use thiserror::Error;
use weft_proto as pb;

use crate::limits::Binding;

/// Longest port id accepted.
pub const MAX_PORT_ID_LEN: usize = 128;
/// Longest status detail accepted.
pub const MAX_DETAIL_LEN: usize = 1024;
/// Most bindings in one report.
pub const MAX_BINDINGS_PER_REPORT: usize = 64;
/// Most peers in one liveness report.
pub const MAX_PEERS_PER_REPORT: usize = 1024;
/// Most counters in one report (and held per host).
pub const MAX_COUNTERS: usize = 256;
/// Longest counter or peer name.
pub const MAX_NAME_LEN: usize = 128;

/// A host name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HostNameError {
    /// Empty or longer than 253 bytes.
    #[error("host name {0:?} must be 1 to 253 characters long")]
    Length(String),
    /// A label is empty, too long, or has a character outside `a-z 0-9 -`.
    #[error(
        "host name {0:?} is not a lowercase DNS name: labels of 1-63 characters a-z, 0-9 and '-', not starting or ending with '-'"
    )]
    Syntax(String),
    /// The name the controller's own certificate carries.
    #[error("host name {0:?} is reserved for the controller; choose another")]
    Reserved(String),
}

/// Checks a host name: a lowercase DNS name, not the controller's reserved name.
pub fn validate_host_name(name: &str) -> Result<(), HostNameError> {
    if name.is_empty() || name.len() > 253 {
        return Err(HostNameError::Length(name.into()));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !name.split('.').all(label_ok) {
        return Err(HostNameError::Syntax(name.into()));
    }
    if name == weft_proto::SERVER_NAME {
        return Err(HostNameError::Reserved(name.into()));
    }
    Ok(())
}

/// Status a host reports for a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// Forwarding.
    Up,
    /// Present, not forwarding.
    Down,
    /// Could not be set up.
    Error,
}

/// Tunnel liveness towards one peer host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerLiveness {
    /// The peer host.
    pub peer: String,
    /// Reachable.
    pub up: bool,
    /// Round-trip time.
    pub rtt_micros: u64,
}

/// One write a host sent, checked for shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostWrite {
    /// Status of a port (the controller checks the port is bound to the host).
    PortStatus {
        /// The port.
        port_id: String,
        /// Its state.
        state: PortState,
        /// Free text.
        detail: String,
    },
    /// Bindings learned on a port (the controller checks the port and the limits).
    Bindings {
        /// The port.
        port_id: String,
        /// The bindings, at most [`MAX_BINDINGS_PER_REPORT`].
        bindings: Vec<Binding>,
    },
    /// Tunnel liveness.
    Liveness(Vec<PeerLiveness>),
    /// Counters by name.
    Counters(Vec<(String, u64)>),
}

impl HostWrite {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            HostWrite::PortStatus { .. } => "port status",
            HostWrite::Bindings { .. } => "learned bindings",
            HostWrite::Liveness(_) => "liveness",
            HostWrite::Counters(_) => "counters",
        }
    }
}

/// Why a message from a host was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// A `host` field named another host than the certificate.
    #[error(
        "message claims host {claimed:?} but the client certificate is for {actual:?}: identity comes from the certificate; leave the field empty"
    )]
    ForgedIdentity {
        /// The name in the message.
        claimed: String,
        /// The name in the certificate.
        actual: String,
    },
    /// A field is out of bounds or malformed.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// Which message or field.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The host does not own what it tried to read or write.
    #[error("{0}")]
    Forbidden(String),
    /// Over a rate or size limit.
    #[error("{0}")]
    Limited(String),
    /// The controller could not apply it.
    #[error("{0}")]
    Unavailable(String),
}

impl Refusal {
    /// The wire code of this refusal.
    pub fn code(&self) -> pb::AnswerCode {
        match self {
            Refusal::ForgedIdentity { .. } | Refusal::Forbidden(_) => pb::AnswerCode::Forbidden,
            Refusal::Invalid { .. } => pb::AnswerCode::Invalid,
            Refusal::Limited(_) => pb::AnswerCode::Limited,
            Refusal::Unavailable(_) => pb::AnswerCode::Unavailable,
        }
    }

    /// The answer a host gets for this refusal.
    pub fn answer(&self, request_id: u64) -> pb::Answer {
        pb::Answer {
            request_id,
            code: self.code() as i32,
            message: self.to_string(),
        }
    }
}

/// Checks an optional claimed identity against the certificate's.
pub fn check_claim(claimed: &str, actual: &str) -> Result<(), Refusal> {
    if claimed.is_empty() || claimed == actual {
        Ok(())
    } else {
        Err(Refusal::ForgedIdentity {
            claimed: claimed.into(),
            actual: actual.into(),
        })
    }
}

fn invalid(what: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal::Invalid {
        what,
        detail: detail.into(),
    }
}

fn check_port_id(port_id: &str) -> Result<(), Refusal> {
    if port_id.is_empty() || port_id.len() > MAX_PORT_ID_LEN {
        return Err(invalid(
            "port_id",
            format!(
                "must be 1 to {MAX_PORT_ID_LEN} bytes, got {}",
                port_id.len()
            ),
        ));
    }
    Ok(())
}

fn check_name(what: &'static str, name: &str) -> Result<(), Refusal> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid(
            what,
            format!("must be 1 to {MAX_NAME_LEN} bytes, got {}", name.len()),
        ));
    }
    Ok(())
}

/// Parses one binding.
pub fn parse_binding(b: &pb::Binding) -> Result<Binding, Refusal> {
    let mac: [u8; 6] = b.mac.as_slice().try_into().map_err(|_| {
        invalid(
            "binding",
            format!("a MAC address has 6 bytes, got {}", b.mac.len()),
        )
    })?;
    if mac[0] & 1 == 1 {
        return Err(invalid(
            "binding",
            "the MAC address is a multicast address; only unicast addresses are learned",
        ));
    }
    let ip = match b.ip.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(b.ip.as_slice()).expect("length checked")),
        16 => IpAddr::from(<[u8; 16]>::try_from(b.ip.as_slice()).expect("length checked")),
        n => {
            return Err(invalid(
                "binding",
                format!("an IP address has 4 or 16 bytes, got {n}"),
            ));
        }
    };
    Ok(Binding { mac, ip })
}

/// Checks a write message against the host's certificate name and the shape bounds.
/// Returns the request id with the checked write, or the request id with the refusal.
pub fn parse_write(
    body: &pb::agent_message::Body,
    host: &str,
) -> Option<(u64, Result<HostWrite, Refusal>)> {
    use pb::agent_message::Body;
    Some(match body {
        Body::PortStatus(m) => (
            m.request_id,
            (|| {
                check_claim(&m.host, host)?;
                check_port_id(&m.port_id)?;
                if m.detail.len() > MAX_DETAIL_LEN {
                    return Err(invalid(
                        "detail",
                        format!("at most {MAX_DETAIL_LEN} bytes, got {}", m.detail.len()),
                    ));
                }
                let state = match pb::PortState::try_from(m.state) {
                    Ok(pb::PortState::Up) => PortState::Up,
                    Ok(pb::PortState::Down) => PortState::Down,
                    Ok(pb::PortState::Error) => PortState::Error,
                    _ => return Err(invalid("state", format!("unknown port state {}", m.state))),
                };
                Ok(HostWrite::PortStatus {
                    port_id: m.port_id.clone(),
                    state,
                    detail: m.detail.clone(),
                })
            })(),
        ),
        Body::LearnedBindings(m) => (
            m.request_id,
            (|| {
                check_claim(&m.host, host)?;
                check_port_id(&m.port_id)?;
                if m.bindings.is_empty() || m.bindings.len() > MAX_BINDINGS_PER_REPORT {
                    return Err(invalid(
                        "bindings",
                        format!(
                            "send 1 to {MAX_BINDINGS_PER_REPORT} bindings per report, got {}",
                            m.bindings.len()
                        ),
                    ));
                }
                let bindings = m
                    .bindings
                    .iter()
                    .map(parse_binding)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(HostWrite::Bindings {
                    port_id: m.port_id.clone(),
                    bindings,
                })
            })(),
        ),
        Body::Liveness(m) => (
            m.request_id,
            (|| {
                check_claim(&m.host, host)?;
                if m.peers.len() > MAX_PEERS_PER_REPORT {
                    return Err(invalid(
                        "liveness",
                        format!(
                            "at most {MAX_PEERS_PER_REPORT} peers, got {}",
                            m.peers.len()
                        ),
                    ));
                }
                let mut peers = Vec::with_capacity(m.peers.len());
                for p in &m.peers {
                    check_name("peer", &p.peer)?;
                    if p.peer == host {
                        return Err(invalid("peer", "a host does not report liveness to itself"));
                    }
                    peers.push(PeerLiveness {
                        peer: p.peer.clone(),
                        up: p.up,
                        rtt_micros: p.rtt_micros,
                    });
                }
                Ok(HostWrite::Liveness(peers))
            })(),
        ),
        Body::Counters(m) => (
            m.request_id,
            (|| {
                check_claim(&m.host, host)?;
                if m.counters.len() > MAX_COUNTERS {
                    return Err(invalid(
                        "counters",
                        format!("at most {MAX_COUNTERS} counters, got {}", m.counters.len()),
                    ));
                }
                let mut out = Vec::with_capacity(m.counters.len());
                for c in &m.counters {
                    check_name("counter name", &c.name)?;
                    out.push((c.name.clone(), c.value));
                }
                Ok(HostWrite::Counters(out))
            })(),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::agent_message::Body;

    #[test]
    fn host_names() {
        for ok in ["h1", "compute-7.rack-2", "a", &"x".repeat(63)] {
            assert_eq!(validate_host_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "H1",
            "-h",
            "h-",
            "a..b",
            "a_b",
            "é",
            &"x".repeat(64),
            "a b",
        ] {
            assert!(validate_host_name(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            validate_host_name("weft-controller"),
            Err(HostNameError::Reserved(_))
        ));
    }

    #[test]
    fn writes_are_checked_for_identity_and_shape() {
        let status = |host: &str, port: &str, state: i32| {
            Body::PortStatus(pb::PortStatus {
                request_id: 7,
                host: host.into(),
                port_id: port.into(),
                state,
                detail: String::new(),
            })
        };
        let (id, w) = parse_write(&status("", "p1", 1), "h1").unwrap();
        assert_eq!(id, 7);
        assert!(matches!(
            w,
            Ok(HostWrite::PortStatus {
                state: PortState::Up,
                ..
            })
        ));
        assert!(parse_write(&status("h1", "p1", 2), "h1").unwrap().1.is_ok());
        let cases: Vec<(Body, pb::AnswerCode)> = vec![
            (status("h2", "p1", 1), pb::AnswerCode::Forbidden),
            (status("", "", 1), pb::AnswerCode::Invalid),
            (status("", &"p".repeat(129), 1), pb::AnswerCode::Invalid),
            (status("", "p1", 99), pb::AnswerCode::Invalid),
            (
                Body::LearnedBindings(pb::LearnedBindings {
                    port_id: "p".into(),
                    bindings: vec![pb::Binding {
                        mac: vec![2; 5],
                        ip: vec![1; 4],
                    }],
                    ..Default::default()
                }),
                pb::AnswerCode::Invalid,
            ),
            (
                Body::LearnedBindings(pb::LearnedBindings {
                    port_id: "p".into(),
                    bindings: vec![pb::Binding {
                        mac: vec![1; 6],
                        ip: vec![1; 4],
                    }],
                    ..Default::default()
                }),
                pb::AnswerCode::Invalid,
            ),
            (
                Body::LearnedBindings(pb::LearnedBindings {
                    port_id: "p".into(),
                    bindings: vec![
                        pb::Binding {
                            mac: vec![2; 6],
                            ip: vec![1; 4]
                        };
                        65
                    ],
                    ..Default::default()
                }),
                pb::AnswerCode::Invalid,
            ),
            (
                Body::Counters(pb::CounterReport {
                    host: "evil".into(),
                    ..Default::default()
                }),
                pb::AnswerCode::Forbidden,
            ),
            (
                Body::Liveness(pb::LivenessReport {
                    peers: vec![pb::PeerLiveness {
                        peer: "h1".into(),
                        up: true,
                        rtt_micros: 1,
                    }],
                    ..Default::default()
                }),
                pb::AnswerCode::Invalid,
            ),
        ];
        for (body, code) in cases {
            let (_, r) = parse_write(&body, "h1").unwrap();
            let refusal = r.expect_err(&format!("{body:?} must be refused"));
            assert_eq!(refusal.code(), code, "{refusal}");
        }
        let v6 = pb::Binding {
            mac: vec![2, 0, 0, 0, 0, 1],
            ip: vec![0x20; 16],
        };
        assert!(parse_binding(&v6).unwrap().ip.is_ipv6());
        assert!(parse_write(&Body::Applied(pb::Applied { revision: 1 }), "h1").is_none());
    }
}
