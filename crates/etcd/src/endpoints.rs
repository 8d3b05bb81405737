//! Endpoint syntax: `etcd://host:port,host:port` for `--store`, and the single endpoints
//! [`EtcdStore::connect`](crate::EtcdStore::connect) accepts.

/// The client port etcd listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 2379;

/// What was wrong with an etcd endpoint or store URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The store URL does not start with `etcd://`.
    #[error("store URL {0:?} must start with etcd://, as in etcd://127.0.0.1:2379,127.0.0.1:22379")]
    Scheme(String),
    /// The URL lists no endpoint.
    #[error("store URL {0:?} lists no endpoint: give host:port[,host:port...] after etcd://")]
    Empty(String),
    /// One endpoint is not `host[:port]`.
    #[error(
        "etcd endpoint {endpoint:?} is not valid ({reason}): write host:port, [ipv6]:port or http://host:port"
    )]
    Endpoint {
        /// The endpoint as written.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// TLS to etcd was asked for; this build speaks plain HTTP/2 only.
    #[error(
        "etcd endpoint {0:?} asks for TLS, which weft-etcd does not support yet: reach etcd over loopback or a private network with http://"
    )]
    Tls(String),
}

/// Parses a store URL, `etcd://host[:port][,host[:port]...]`, into the endpoints for
/// [`EtcdStore::connect`](crate::EtcdStore::connect), each as `http://host:port`. The
/// port defaults to 2379; IPv6 hosts go in brackets (`etcd://[::1]:2379`).
///
/// ```
/// let eps = weft_etcd::parse_store_url("etcd://127.0.0.1:2379,10.0.0.2").unwrap();
/// assert_eq!(eps, ["http://127.0.0.1:2379", "http://10.0.0.2:2379"]);
/// ```
pub fn parse_store_url(url: &str) -> Result<Vec<String>, EndpointError> {
    let rest = url
        .strip_prefix("etcd://")
        .ok_or_else(|| EndpointError::Scheme(url.to_owned()))?;
    let endpoints = rest
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_endpoint)
        .collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        return Err(EndpointError::Empty(url.to_owned()));
    }
    Ok(endpoints)
}

/// Normalizes one endpoint (`host`, `host:port`, `[v6]:port`, `http://host:port`) to
/// `http://host:port`.
pub fn parse_endpoint(endpoint: &str) -> Result<String, EndpointError> {
    let bad = |reason| EndpointError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    if endpoint.starts_with("https://") {
        return Err(EndpointError::Tls(endpoint.to_owned()));
    }
    let authority = endpoint.strip_prefix("http://").unwrap_or(endpoint);
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    if authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad("only a host and a port are allowed"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("not an IPv6 address inside [ ]"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
        };
        (format!("[{host}]"), port)
    } else {
        match authority.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(bad("IPv6 addresses need brackets"));
            }
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(bad("the port must be a number from 1 to 65535")),
            Ok(p) => p,
        },
    };
    Ok(format!("http://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        let ok = [
            ("etcd://127.0.0.1:2379", vec!["http://127.0.0.1:2379"]),
            (
                "etcd://127.0.0.1:2379,127.0.0.1:22379",
                vec!["http://127.0.0.1:2379", "http://127.0.0.1:22379"],
            ),
            (
                "etcd://a, b:1 ,[::1]:3,[fe80::1]",
                vec![
                    "http://a:2379",
                    "http://b:1",
                    "http://[::1]:3",
                    "http://[fe80::1]:2379",
                ],
            ),
            ("etcd://http://h:5/", vec!["http://h:5"]),
        ];
        for (url, want) in ok {
            assert_eq!(parse_store_url(url).unwrap(), want, "{url}");
        }
        let bad = [
            ("127.0.0.1:2379", "Scheme"),
            ("etcd://", "Empty"),
            ("etcd://,,", "Empty"),
            ("etcd://h:0", "Endpoint"),
            ("etcd://h:99999", "Endpoint"),
            ("etcd://h:x", "Endpoint"),
            ("etcd://::1:2379", "Endpoint"),
            ("etcd://[::1", "Endpoint"),
            ("etcd://[nope]:1", "Endpoint"),
            ("etcd://[::1]x", "Endpoint"),
            ("etcd://:2379", "Endpoint"),
            ("etcd://h:1/path", "Endpoint"),
            ("etcd://https://h:1", "Tls"),
        ];
        for (url, kind) in bad {
            let err = parse_store_url(url).unwrap_err();
            assert!(format!("{err:?}").starts_with(kind), "{url}: {err:?}");
            if kind == "Endpoint" {
                // The message names the offending endpoint.
                assert!(
                    err.to_string().contains(url.trim_start_matches("etcd://")),
                    "{err}"
                );
            }
        }
    }
}
