//! Bounds on what one host may write: a token bucket and the learned-binding table
//! (rate-limited per host, expiring, bounded per host and per port).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use thiserror::Error;

/// A token bucket: `capacity` tokens, refilled at `per_sec`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(capacity: u32, per_sec: f64, now: Instant) -> Self {
        TokenBucket {
            capacity: f64::from(capacity),
            per_sec,
            tokens: f64::from(capacity),
            last: now,
        }
    }

    /// Takes `n` tokens if there are that many; otherwise takes none.
    pub fn try_take(&mut self, n: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = now;
        if self.tokens >= f64::from(n) {
            self.tokens -= f64::from(n);
            true
        } else {
            false
        }
    }
}

/// Limits of the learned-binding table.
#[derive(Clone, Debug)]
pub struct BindingLimits {
    /// Bindings (new or refreshed) a host may report per second, sustained.
    pub per_host_rate: f64,
    /// Bindings a host may report in a burst.
    pub per_host_burst: u32,
    /// Bindings a host may hold in the table.
    pub max_per_host: usize,
    /// Bindings one port may hold.
    pub max_per_port: usize,
    /// A binding not refreshed for this long is dropped.
    pub ttl: Duration,
}

impl Default for BindingLimits {
    fn default() -> Self {
        BindingLimits {
            per_host_rate: 50.0,
            per_host_burst: 200,
            max_per_host: 4096,
            max_per_port: 64,
            ttl: Duration::from_secs(300),
        }
    }
}

/// A MAC/IP binding a host saw on one of its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Binding {
    /// The MAC address.
    pub mac: [u8; 6],
    /// The IP address.
    pub ip: IpAddr,
}

/// A binding as the table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedBinding {
    /// The port it was seen on.
    pub port_id: String,
    /// The binding.
    pub binding: Binding,
    /// The host that reported it.
    pub host: String,
    /// When it expires unless refreshed.
    pub expires: Instant,
}

/// Why a host's bindings were refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BindingRefusal {
    /// The host reports faster than its rate.
    #[error(
        "host {host} exceeds its binding rate ({rate}/s, burst {burst}): {asked} bindings refused; report only changes and retry later"
    )]
    RateLimited {
        /// The host.
        host: String,
        /// Bindings in the refused report.
        asked: usize,
        /// The sustained rate.
        rate: f64,
        /// The burst.
        burst: u32,
    },
    /// The host's table is full.
    #[error(
        "host {host} holds {held} learned bindings, the limit is {max}: refused; let old bindings expire"
    )]
    HostFull {
        /// The host.
        host: String,
        /// Bindings held.
        held: usize,
        /// The limit.
        max: usize,
    },
    /// The port's table is full.
    #[error(
        "port {port_id} holds {held} learned bindings, the limit is {max}: refused; let old bindings expire"
    )]
    PortFull {
        /// The port.
        port_id: String,
        /// Bindings held.
        held: usize,
        /// The limit.
        max: usize,
    },
}

#[derive(Default)]
struct HostEntry {
    bucket: Option<TokenBucket>,
    count: usize,
}

/// The learned bindings of every host, bounded and expiring. Callers check that the port is
/// bound to the host before calling [`BindingTable::learn`].
#[derive(Default)]
pub struct BindingTable {
    limits: BindingLimits,
    hosts: HashMap<String, HostEntry>,
    /// Port → binding → (host, expiry).
    ports: HashMap<String, BTreeMap<Binding, (String, Instant)>>,
}

impl BindingTable {
    /// An empty table.
    pub fn new(limits: BindingLimits) -> Self {
        BindingTable {
            limits,
            ..BindingTable::default()
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &BindingLimits {
        &self.limits
    }

    /// Records (or refreshes) bindings `host` saw on `port_id`: all of them, or none.
    /// Returns how many were new.
    pub fn learn(
        &mut self,
        host: &str,
        port_id: &str,
        bindings: &[Binding],
        now: Instant,
    ) -> Result<usize, BindingRefusal> {
        self.expire(now);
        let limits = self.limits.clone();
        let port = self.ports.get(port_id);
        let fresh: Vec<&Binding> = {
            let mut seen = std::collections::BTreeSet::new();
            bindings
                .iter()
                .filter(|b| seen.insert(**b))
                .filter(|b| port.is_none_or(|p| !p.contains_key(b)))
                .collect()
        };
        let port_held = port.map_or(0, BTreeMap::len);
        let entry = self.hosts.entry(host.to_string()).or_default();
        if entry.count + fresh.len() > limits.max_per_host {
            return Err(BindingRefusal::HostFull {
                host: host.into(),
                held: entry.count,
                max: limits.max_per_host,
            });
        }
        if port_held + fresh.len() > limits.max_per_port {
            return Err(BindingRefusal::PortFull {
                port_id: port_id.into(),
                held: port_held,
                max: limits.max_per_port,
            });
        }
        let bucket = entry.bucket.get_or_insert_with(|| {
            TokenBucket::new(limits.per_host_burst, limits.per_host_rate, now)
        });
        let asked = u32::try_from(bindings.len()).unwrap_or(u32::MAX);
        if !bucket.try_take(asked, now) {
            return Err(BindingRefusal::RateLimited {
                host: host.into(),
                asked: bindings.len(),
                rate: limits.per_host_rate,
                burst: limits.per_host_burst,
            });
        }
        entry.count += fresh.len();
        let new = fresh.len();
        let port = self.ports.entry(port_id.to_string()).or_default();
        for b in bindings {
            port.insert(*b, (host.to_string(), now + limits.ttl));
        }
        Ok(new)
    }

    /// Drops expired bindings; returns the ports whose bindings changed.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut changed = Vec::new();
        let hosts = &mut self.hosts;
        self.ports.retain(|port_id, bindings| {
            let before = bindings.len();
            bindings.retain(|_, (host, expires)| {
                let keep = *expires > now;
                if !keep && let Some(h) = hosts.get_mut(host.as_str()) {
                    h.count = h.count.saturating_sub(1);
                }
                keep
            });
            if bindings.len() != before {
                changed.push(port_id.clone());
            }
            !bindings.is_empty()
        });
        changed
    }

    /// Drops everything a host reported (when it is removed or revoked).
    pub fn remove_host(&mut self, host: &str) {
        self.hosts.remove(host);
        self.ports.retain(|_, b| {
            b.retain(|_, (h, _)| h != host);
            !b.is_empty()
        });
    }

    /// The bindings learned on a port.
    pub fn of_port(&self, port_id: &str) -> Vec<LearnedBinding> {
        self.ports
            .get(port_id)
            .into_iter()
            .flatten()
            .map(|(b, (host, expires))| LearnedBinding {
                port_id: port_id.into(),
                binding: *b,
                host: host.clone(),
                expires: *expires,
            })
            .collect()
    }

    /// Bindings a host holds.
    pub fn host_len(&self, host: &str) -> usize {
        self.hosts.get(host).map_or(0, |h| h.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(i: u8) -> Binding {
        Binding {
            mac: [2, 0, 0, 0, 0, i],
            ip: IpAddr::from([203, 0, 113, i]),
        }
    }

    #[test]
    fn bucket_refills_with_time() {
        let t0 = Instant::now();
        let mut tb = TokenBucket::new(10, 5.0, t0);
        assert!(tb.try_take(10, t0));
        assert!(!tb.try_take(1, t0));
        assert!(!tb.try_take(2, t0 + Duration::from_millis(300)));
        assert!(tb.try_take(2, t0 + Duration::from_millis(400)));
        // Never more than the capacity, however long the pause.
        assert!(!tb.try_take(11, t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn rate_port_and_host_limits_refuse_whole_reports() {
        let t0 = Instant::now();
        let limits = BindingLimits {
            per_host_rate: 1.0,
            per_host_burst: 4,
            max_per_host: 6,
            max_per_port: 3,
            ttl: Duration::from_secs(60),
        };
        let mut t = BindingTable::new(limits);
        assert_eq!(t.learn("h", "p1", &[b(1), b(2)], t0), Ok(2));
        // Refreshing costs a token but adds nothing.
        assert_eq!(t.learn("h", "p1", &[b(1)], t0), Ok(0));
        assert!(matches!(
            t.learn("h", "p1", &[b(3), b(4)], t0),
            Err(BindingRefusal::PortFull { .. })
        ));
        assert_eq!(t.learn("h", "p2", &[b(5)], t0), Ok(1));
        assert!(matches!(
            t.learn("h", "p2", &[b(6)], t0),
            Err(BindingRefusal::RateLimited { .. })
        ));
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(t.learn("h", "p2", &[b(6), b(7)], t1), Ok(2));
        assert_eq!(t.host_len("h"), 5);
        let t2 = t1 + Duration::from_secs(10);
        assert!(matches!(
            t.learn("h", "p3", &[b(8), b(9)], t2),
            Err(BindingRefusal::HostFull {
                held: 5,
                max: 6,
                ..
            })
        ));
        // Another host is not affected by h's limits.
        assert_eq!(t.learn("g", "p9", &[b(1), b(2), b(3)], t2), Ok(3));
        // Everything of h expires after the TTL unless refreshed.
        let t3 = t0 + Duration::from_secs(61);
        assert_eq!(t.learn("h", "p2", &[b(6)], t3), Ok(0));
        assert_eq!(t.host_len("h"), 2, "p1's two bindings and b(5) expired");
        assert!(t.of_port("p1").is_empty());
        assert_eq!(t.of_port("p2").len(), 2);
        t.remove_host("h");
        assert!(t.of_port("p2").is_empty());
        assert_eq!(t.host_len("g"), 3);
    }
}
