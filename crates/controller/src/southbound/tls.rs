//! The TLS edge: the server configuration (TLS 1.3, ring, client certificates optional at
//! the handshake so that enrolment works, but verified when presented), the client
//! certificate check against the host registry, and the accept loop that turns TCP
//! connections into [`SbConn`]s carrying the verified identity.
//!
//! ```text
//!  TcpListener ─accept─► handshake task (timeout, bounded concurrency) ─► SbConn ─► tonic
//!                           │ refused: log with peer address and claimed subject
//!                           └ SbConn::closed: the registry closes it on revoke/shutdown
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use tracing::{debug, warn};

use super::SouthboundError;
use super::ca::cert_identity;
use super::hosts::{ByteCounters, Registry};
use std::sync::atomic::Ordering;

/// Checks client certificates: chain to the CA (webpki, clientAuth usage), then the host
/// registry (enrolled, not revoked, the serial in force). Every refusal is logged with the
/// name the certificate claims.
#[derive(Debug)]
pub struct HostCertVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    registry: Arc<RegistryRef>,
}

/// The registry as the verifier sees it (Debug for rustls' trait bound).
pub struct RegistryRef(pub Arc<Registry>);

impl std::fmt::Debug for RegistryRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl ClientCertVerifier for HostCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Enrolment comes without a certificate; the session RPC requires one.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let claimed = cert_identity(end_entity);
        let claimed_name = claimed
            .as_ref()
            .map_or_else(|e| format!("<{e}>"), |i| i.name.clone());
        if let Err(e) = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            warn!(host = %claimed_name, error = %e, "refused client certificate: it does not verify against the southbound CA");
            return Err(e);
        }
        let id = claimed.map_err(|e| {
            warn!(error = %e, "refused client certificate");
            rustls::Error::General(e)
        })?;
        if let Err(e) = self.registry.0.check_cert(&id.name, &id.serial) {
            warn!(host = %id.name, serial = %id.serial, reason = %e, "refused client certificate");
            return Err(rustls::Error::General(e));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The server TLS configuration: TLS 1.3 only, ring, ALPN h2, client certificates checked by
/// [`HostCertVerifier`].
pub fn server_config(
    ca_der: &CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
    registry: Arc<Registry>,
) -> Result<rustls::ServerConfig, SouthboundError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(ca_der.clone())
        .map_err(|e| SouthboundError::Certificate(format!("CA certificate: {e}")))?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| SouthboundError::Certificate(format!("client verifier: {e}")))?;
    let verifier = Arc::new(HostCertVerifier {
        inner,
        registry: Arc::new(RegistryRef(registry)),
    });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| SouthboundError::Certificate(format!("TLS versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(server_chain, server_key)
        .map_err(|e| SouthboundError::Certificate(format!("server certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// What the service knows about a connection: verified by the handshake, never by messages.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The peer address.
    pub remote: SocketAddr,
    /// The host name from the verified client certificate; `None` without a certificate
    /// (enrolment only).
    pub host: Option<String>,
    /// The certificate's serial.
    pub serial: Option<String>,
    /// Registry id of the connection.
    pub id: u64,
}

/// A TLS connection that the controller can close at once (revocation, shutdown).
pub struct SbConn {
    inner: TlsStream<Counting>,
    info: ConnInfo,
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    is_closed: bool,
    registry: Arc<Registry>,
    bytes: Option<Arc<ByteCounters>>,
}

impl SbConn {
    fn check_closed(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.is_closed && self.closed.as_mut().poll(cx).is_ready() {
            self.is_closed = true;
        }
        if self.is_closed {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed by the controller",
            ))
        } else {
            Ok(())
        }
    }
}

impl SbConn {
    fn count_sent(&self, r: &Poll<io::Result<usize>>) {
        if let (Some(b), Poll::Ready(Ok(n))) = (&self.bytes, r) {
            b.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
    }
}

impl Drop for SbConn {
    fn drop(&mut self) {
        self.registry.connection_closed(self.info.id);
    }
}

impl Connected for SbConn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for SbConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_closed(cx)?;
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(b) = &self.bytes {
            b.received
                .fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for SbConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_closed(cx)?;
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count_sent(&r);
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_closed(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_closed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_closed(cx)?;
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.count_sent(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A TCP stream that counts every byte into shared counters (handshakes included).
pub struct Counting {
    inner: TcpStream,
    bytes: Arc<ByteCounters>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.bytes
            .received
            .fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.bytes.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Limits of the accept loop.
#[derive(Clone, Debug)]
pub struct AcceptLimits {
    /// A handshake not finished in this delay is dropped.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; more connections wait in the kernel backlog.
    pub max_handshakes: usize,
    /// Connections one host may hold at once.
    pub max_connections_per_host: usize,
    /// How long a connection without a client certificate (enrolment) may stay open.
    pub enrol_connection_lifetime: Duration,
}

/// Waits until `stop` flips (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Accepts connections until `stop` flips, handing finished handshakes to `out`.
pub async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    registry: Arc<Registry>,
    limits: AcceptLimits,
    out: mpsc::Sender<Result<SbConn, io::Error>>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_handshakes));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
            _ = stopped(&mut stop) => return,
        };
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    warn!(error = %e, "southbound accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let registry = registry.clone();
        let out = out.clone();
        let timeout = limits.handshake_timeout;
        let limits = limits.clone();
        tokio::spawn(async move {
            let tcp = Counting {
                inner: tcp,
                bytes: registry.wire_bytes(),
            };
            let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    warn!(%remote, error = %e, "refused southbound connection: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    warn!(%remote, "refused southbound connection: no TLS handshake within {timeout:?}");
                    return;
                }
            };
            drop(permit);
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| cert_identity(c));
            let (host, serial) = match identity {
                Some(Ok(id)) => (Some(id.name), Some(id.serial)),
                // The verifier accepted it, so this does not happen; refuse all the same.
                Some(Err(e)) => {
                    warn!(%remote, error = %e, "refused southbound connection");
                    return;
                }
                None => (None, None),
            };
            let super::hosts::OpenedConn { id, closed, bytes } = match registry.connection_opened(
                host.as_deref(),
                serial.as_deref(),
                limits.max_connections_per_host,
            ) {
                Ok(x) => x,
                Err(reason) => {
                    warn!(%remote, host = host.as_deref().unwrap_or("-"), %reason, "refused southbound connection");
                    return;
                }
            };
            // Without a certificate a connection may only enrol: it gets a short life.
            if host.is_none() {
                let registry = registry.clone();
                let lifetime = limits.enrol_connection_lifetime;
                tokio::spawn(async move {
                    tokio::time::sleep(lifetime).await;
                    registry.close(id);
                });
            }
            // A revocation between the handshake and the registration must not be missed.
            if let (Some(h), Some(s)) = (&host, &serial)
                && let Err(reason) = registry.check_cert(h, s)
            {
                registry.connection_closed(id);
                warn!(%remote, host = %h, %reason, "refused southbound connection");
                return;
            }
            debug!(%remote, host = host.as_deref().unwrap_or("-"), "southbound connection");
            let mut closed = closed;
            let conn = SbConn {
                inner: tls,
                info: ConnInfo {
                    remote,
                    host,
                    serial,
                    id,
                },
                closed: Box::pin(async move {
                    let _ = closed.wait_for(|c| *c).await;
                }),
                is_closed: false,
                registry,
                bytes,
            };
            let _ = out.send(Ok(conn)).await;
        });
    }
}
