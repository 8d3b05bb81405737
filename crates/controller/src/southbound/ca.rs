//! The controller's own certificate authority: created once, kept in the store under
//! [`CA_CERT_KEY`] and [`CA_KEY_KEY`], it signs the controller's TLS certificate and every
//! host certificate.
//!
//! Host certificates carry the host name as CN and DNS SAN and the clientAuth usage only;
//! the controller's carries [`weft_proto::SERVER_NAME`] and serverAuth only, so neither can
//! stand in for the other.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use weft_store::{Store, Txn, TxnOutcome};

use super::SouthboundError;

/// Store key of the CA certificate (PEM).
pub const CA_CERT_KEY: &str = "ca/southbound/cert.pem";
/// Store key of the CA private key (PKCS#8 PEM).
pub const CA_KEY_KEY: &str = "ca/southbound/key.pem";

/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 86_400);

/// A certificate with its serial and expiry, as issued.
#[derive(Clone, Debug)]
pub struct Issued {
    /// PEM of the certificate.
    pub pem: String,
    /// DER of the certificate.
    pub der: CertificateDer<'static>,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: u64,
}

/// The CA: its certificate and key.
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("sha256", &weft_southbound::join::hex(&self.sha256()))
            .finish_non_exhaustive()
    }
}

/// Sets a certificate's validity, in seconds since the Unix epoch.
fn set_validity(p: &mut CertificateParams, from_unix: u64, to_unix: u64) {
    // Through rcgen's own date type, so that Weft does not pin the `time` crate itself.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    p.not_before = epoch + Duration::from_secs(from_unix);
    p.not_after = epoch + Duration::from_secs(to_unix);
}

/// A random, positive 128-bit serial number and its hex form.
fn new_serial() -> (SerialNumber, String) {
    let mut bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // No leading zero byte, so the DER form is exactly these 16 bytes.
    (
        SerialNumber::from_slice(&bytes),
        weft_southbound::join::hex(&bytes),
    )
}

fn rcgen_err(what: &str) -> impl Fn(rcgen::Error) -> SouthboundError + '_ {
    move |e| SouthboundError::Certificate(format!("{what}: {e}"))
}

impl CertificateAuthority {
    /// Loads the CA from the store, creating it on first use. Several replicas starting at
    /// once agree on one CA: creation is a compare-and-set on the absent key.
    pub async fn load_or_create(
        store: &Arc<dyn Store>,
        now_unix: u64,
    ) -> Result<Self, SouthboundError> {
        for _ in 0..3 {
            let (cert, _) = store.get(CA_CERT_KEY).await?;
            let (key, _) = store.get(CA_KEY_KEY).await?;
            if let (Some(cert), Some(key)) = (cert, key) {
                let cert = String::from_utf8(cert.value).map_err(|_| {
                    SouthboundError::Certificate("CA certificate is not UTF-8".into())
                })?;
                let key = String::from_utf8(key.value)
                    .map_err(|_| SouthboundError::Certificate("CA key is not UTF-8".into()))?;
                return Self::from_pem(&cert, &key);
            }
            let key = KeyPair::generate().map_err(rcgen_err("generating the CA key"))?;
            let mut p = CertificateParams::default();
            p.distinguished_name
                .push(DnType::CommonName, "Weft southbound CA");
            p.distinguished_name.push(DnType::OrganizationName, "Weft");
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p.serial_number = Some(new_serial().0);
            set_validity(
                &mut p,
                now_unix.saturating_sub(3600),
                now_unix + CA_VALIDITY.as_secs(),
            );
            let cert = p.self_signed(&key).map_err(rcgen_err("signing the CA"))?;
            let txn = Txn::new()
                .when_mod_revision(CA_CERT_KEY, 0)
                .when_mod_revision(CA_KEY_KEY, 0)
                .put(CA_CERT_KEY, cert.pem())
                .put(CA_KEY_KEY, key.serialize_pem());
            if let TxnOutcome::Committed { .. } = store.txn(txn).await? {
                tracing::info!("created the southbound certificate authority");
                return Self::from_pem(&cert.pem(), &key.serialize_pem());
            }
            // Another replica created it first: read theirs.
        }
        Err(SouthboundError::Certificate(
            "could not create or read the CA in the store; check the store".into(),
        ))
    }

    /// A CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, SouthboundError> {
        let key = KeyPair::from_pem(key_pem).map_err(rcgen_err("reading the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(rcgen_err("reading the CA certificate"))?;
        let cert_der = pem_to_der(cert_pem)?;
        Ok(CertificateAuthority {
            cert_pem: cert_pem.to_string(),
            cert_der,
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 of the CA certificate (DER): the pin in join tokens.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.cert_der.as_ref()).into()
    }

    /// Issues a host certificate for `host` over the public key of a PKCS#10 request. Only
    /// the key is taken from the request: names, usages and validity are the controller's.
    pub fn issue_host(
        &self,
        host: &str,
        csr_der: &[u8],
        now_unix: u64,
        validity: Duration,
    ) -> Result<Issued, SouthboundError> {
        let mut csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
            .map_err(|e| {
                SouthboundError::Invalid(format!(
                    "the certificate signing request could not be read or its signature is wrong ({e}); send a PKCS#10 request in DER"
                ))
            })?;
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, host);
        p.subject_alt_names = vec![SanType::DnsName(
            host.try_into().map_err(rcgen_err("host name"))?,
        )];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (serial_number, serial) = new_serial();
        p.serial_number = Some(serial_number);
        let not_after = now_unix + validity.as_secs();
        set_validity(&mut p, now_unix.saturating_sub(300), not_after);
        csr.params = p;
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(rcgen_err("signing the host certificate"))?;
        Ok(Issued {
            pem: cert.pem(),
            der: cert.der().clone(),
            serial,
            not_after,
        })
    }

    /// Issues the controller's TLS certificate and key: [`weft_proto::SERVER_NAME`] plus
    /// `extra_names`, serverAuth only.
    pub fn issue_server(
        &self,
        extra_names: &[String],
        now_unix: u64,
        validity: Duration,
    ) -> Result<(Issued, PrivateKeyDer<'static>), SouthboundError> {
        let key = KeyPair::generate().map_err(rcgen_err("generating the server key"))?;
        let mut names = vec![weft_proto::SERVER_NAME.to_string()];
        names.extend(extra_names.iter().cloned());
        let mut p = CertificateParams::new(names).map_err(rcgen_err("server names"))?;
        p.distinguished_name
            .push(DnType::CommonName, weft_proto::SERVER_NAME);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (serial_number, serial) = new_serial();
        p.serial_number = Some(serial_number);
        let not_after = now_unix + validity.as_secs();
        set_validity(&mut p, now_unix.saturating_sub(300), not_after);
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(rcgen_err("signing the server certificate"))?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((
            Issued {
                pem: cert.pem(),
                der: cert.der().clone(),
                serial,
                not_after,
            },
            key_der,
        ))
    }
}

/// The DER of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Result<CertificateDer<'static>, SouthboundError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| SouthboundError::Certificate(format!("reading a PEM certificate: {e}")))
}

/// What a verified certificate says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertIdentity {
    /// The host name (CN; the DNS SAN must agree).
    pub name: String,
    /// Serial number, lowercase hex.
    pub serial: String,
}

/// Reads the host name and serial from a certificate. The name must be the CN and the only
/// DNS SAN; a certificate where they disagree is refused rather than guessed at.
pub fn cert_identity(der: &[u8]) -> Result<CertIdentity, String> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("certificate has no common name")?
        .to_string();
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if sans != [cn.clone()] {
        return Err(format!(
            "certificate names disagree: CN {cn:?}, DNS SANs {sans:?}"
        ));
    }
    let serial = weft_southbound::join::hex(cert.raw_serial());
    Ok(CertIdentity { name: cn, serial })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        1_780_000_000
    }

    #[test]
    fn host_certificates_carry_the_name_and_only_the_csr_key() {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "test CA");
        let ca_cert = p.self_signed(&ca_key).unwrap();
        let ca = CertificateAuthority::from_pem(&ca_cert.pem(), &ca_key.serialize_pem()).unwrap();

        let host_key = KeyPair::generate().unwrap();
        // The request asks for another name and for serverAuth: both are ignored.
        let mut req = CertificateParams::new(vec!["weft-controller".to_string()]).unwrap();
        req.distinguished_name
            .push(DnType::CommonName, "weft-controller");
        req.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let csr = req.serialize_request(&host_key).unwrap();
        let issued = ca
            .issue_host("h1", csr.der(), now(), Duration::from_secs(86_400))
            .unwrap();
        let id = cert_identity(&issued.der).unwrap();
        assert_eq!(id.name, "h1");
        assert_eq!(id.serial, issued.serial);
        assert_eq!(issued.serial.len(), 32);
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            host_key.public_key_raw()
        );
        assert!(
            ca.issue_host("h1", b"garbage", now(), Duration::from_secs(1))
                .is_err()
        );
    }
}
