//! The agent's TLS: its identity files, the client configuration for sessions (trust only
//! the controller CA, present the host certificate, verify the name `weft-controller`), the
//! pinned-CA configuration for enrolment, and the dialer that gives tonic a TLS stream.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

/// A host's credentials: its name, certificate and key, and the CA it trusts.
#[derive(Clone)]
pub struct Identity {
    /// The host name in the certificate.
    pub host: String,
    /// The host certificate, PEM.
    pub cert_pem: String,
    /// The host private key, PEM.
    pub key_pem: String,
    /// The controller CA certificate, PEM.
    pub ca_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

const HOST_FILE: &str = "host-name";
const CERT_FILE: &str = "host.crt";
const KEY_FILE: &str = "host.key";
const CA_FILE: &str = "ca.crt";

/// Writes a file atomically (temporary file, fsync, rename, fsync of the directory), readable
/// by its owner only when `private`.
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8], private: bool) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(if private { 0o600 } else { 0o644 });
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
        .with_context(|| format!("renaming {} into place", tmp.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

impl Identity {
    /// Reads the identity files of a state directory.
    pub fn load(dir: &Path) -> Result<Identity> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).with_context(|| {
                format!(
                    "reading {} (enrol this host first: weft host enroll --state-dir {})",
                    dir.join(name).display(),
                    dir.display()
                )
            })
        };
        Ok(Identity {
            host: read(HOST_FILE)?.trim().to_string(),
            cert_pem: read(CERT_FILE)?,
            key_pem: read(KEY_FILE)?,
            ca_pem: read(CA_FILE)?,
        })
    }

    /// Writes the identity files into a state directory (the key readable by root only).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomic(dir, KEY_FILE, self.key_pem.as_bytes(), true)?;
        write_atomic(dir, CERT_FILE, self.cert_pem.as_bytes(), false)?;
        write_atomic(dir, CA_FILE, self.ca_pem.as_bytes(), false)?;
        write_atomic(dir, HOST_FILE, format!("{}\n", self.host).as_bytes(), false)?;
        Ok(())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The session TLS configuration of an identity.
pub fn client_config(id: &Identity) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(id.ca_pem.as_bytes()) {
        roots.add(ca.context("reading the CA certificate")?)?;
    }
    let chain = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("reading the host certificate")?;
    let key =
        PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).context("reading the host key")?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts the controller's certificate only if it chains to a CA whose SHA-256 is the pin
/// of the join token (the CA comes in the handshake's chain).
#[derive(Debug)]
struct PinnedCa {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| Sha256::digest(c.as_ref()).as_slice() == self.pin)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the controller's CA does not match the join token's fingerprint: wrong controller address, or someone in between".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The enrolment TLS configuration: no client certificate, the controller CA pinned.
pub fn enroll_config(ca_sha256: [u8; 32]) -> Result<Arc<rustls::ClientConfig>> {
    let p = provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            pin: ca_sha256,
            provider: p,
        }))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// `host:port`, with the default southbound port when none is given.
pub fn with_default_port(addr: &str) -> String {
    let has_port = match addr.rsplit_once(':') {
        Some((h, p)) => p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']')),
        None => false,
    };
    if has_port {
        addr.to_string()
    } else {
        format!("{addr}:{}", weft_proto::DEFAULT_PORT)
    }
}

/// Timeouts of a connection.
#[derive(Clone, Copy, Debug)]
pub struct DialOptions {
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// HTTP/2 ping interval; a controller silent for interval + interval/2 is dropped.
    pub keepalive: Duration,
}

impl Default for DialOptions {
    fn default() -> Self {
        DialOptions {
            connect_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(10),
        }
    }
}

/// Dials `addr` over TLS with `tls` and returns a gRPC channel on that one connection.
pub async fn dial(
    addr: &str,
    tls: Arc<rustls::ClientConfig>,
    opts: DialOptions,
) -> Result<Channel> {
    let addr = with_default_port(addr);
    let endpoint = Endpoint::from_static("http://weft-controller")
        .connect_timeout(opts.connect_timeout)
        .http2_keep_alive_interval(opts.keepalive)
        .keep_alive_timeout(opts.keepalive / 2)
        .keep_alive_while_idle(true);
    let target = addr.clone();
    let connector = tower::service_fn(move |_: Uri| {
        let addr = target.clone();
        let tls = tls.clone();
        async move {
            let tcp = TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(weft_proto::SERVER_NAME)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let stream = TlsConnector::from(tls).connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| {
            anyhow!(
                "connecting to the controller at {addr}: {}",
                error_chain(&e)
            )
        })?;
    Ok(channel)
}

/// An error with its sources, on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Checks that a PEM holds a certificate whose SHA-256 is `pin`.
pub fn check_pin(ca_pem: &str, pin: [u8; 32]) -> Result<()> {
    let der =
        CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("reading the CA certificate")?;
    if Sha256::digest(der.as_ref()).as_slice() != pin {
        bail!("the CA certificate sent at enrolment does not match the join token's fingerprint");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_port_is_added_only_when_missing() {
        assert_eq!(with_default_port("ctl.example"), "ctl.example:9798");
        assert_eq!(with_default_port("198.51.100.1:1234"), "198.51.100.1:1234");
        assert_eq!(with_default_port("[2001:db8::1]:99"), "[2001:db8::1]:99");
        assert_eq!(with_default_port("[2001:db8::1]"), "[2001:db8::1]:9798");
    }
}
