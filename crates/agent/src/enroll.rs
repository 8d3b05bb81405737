//! `weft host enroll`: trade a join token for a host certificate. The key pair is made here
//! and never leaves the host; the controller is recognised by the CA fingerprint in the token.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rcgen::{CertificateParams, DnType, KeyPair};
use weft_proto as pb;
use weft_southbound::{JoinToken, validate_host_name};

use crate::tls::{DialOptions, Identity, check_pin, dial, enroll_config};

/// Enrols this host as `host` with the controller at `controller` and writes its identity
/// into `state_dir`.
pub async fn enroll(
    controller: &str,
    token: &str,
    host: &str,
    state_dir: &Path,
) -> Result<Identity> {
    let token: JoinToken = token.parse()?;
    validate_host_name(host)?;
    let key = KeyPair::generate().context("generating the host key")?;
    let mut params = CertificateParams::new(vec![host.to_string()])?;
    params.distinguished_name.push(DnType::CommonName, host);
    let csr = params.serialize_request(&key)?;
    let channel = dial(
        controller,
        enroll_config(token.ca_sha256)?,
        DialOptions::default(),
    )
    .await?;
    let mut client = pb::southbound_client::SouthboundClient::new(channel);
    let resp = match client
        .enroll(pb::EnrollRequest {
            token: token.credential(),
            host_name: host.to_string(),
            csr_der: csr.der().to_vec(),
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => bail!("the controller refused the enrolment: {}", s.message()),
    };
    check_pin(&resp.ca_certificate_pem, token.ca_sha256)?;
    if resp.host_name != host {
        bail!(
            "the controller issued a certificate for {:?}, not {host:?}",
            resp.host_name
        );
    }
    let identity = Identity {
        host: host.to_string(),
        cert_pem: resp.certificate_pem,
        key_pem: key.serialize_pem(),
        ca_pem: resp.ca_certificate_pem,
    };
    identity.save(state_dir)?;
    Ok(identity)
}
