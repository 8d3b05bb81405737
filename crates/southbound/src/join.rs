//! The text of a join token: `weftjoin.<CA SHA-256 hex>.<id>.<secret>`.
//!
//! The CA fingerprint lets a host that holds nothing yet check, at enrolment, that it talks
//! to the controller the administrator meant (as kubeadm's `--discovery-token-ca-cert-hash`
//! does); the id names the stored token; the secret is stored only as a hash.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

const PREFIX: &str = "weftjoin";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the controller CA certificate (DER).
    pub ca_sha256: [u8; 32],
    /// The token id (16 lowercase hex digits).
    pub id: String,
    /// The secret (at least 32 characters of `[0-9a-z]`).
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret never goes to logs.
        f.debug_struct("JoinToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A join token's text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "not a join token: expected weftjoin.<64 hex CA fingerprint>.<16 hex id>.<secret> as printed by `weft host token create`"
)]
pub struct JoinTokenSyntax;

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Lowercase hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl JoinToken {
    /// The part sent to the controller: `<id>.<secret>` (the pin stays with the host).
    pub fn credential(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// Splits a credential `<id>.<secret>` as the controller receives it.
    pub fn split_credential(credential: &str) -> Option<(&str, &str)> {
        let (id, secret) = credential.split_once('.')?;
        (id.len() == 16
            && is_lower_hex(id)
            && (32..=128).contains(&secret.len())
            && secret.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some((id, secret))
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}",
            hex(&self.ca_sha256),
            self.id,
            self.secret
        )
    }
}

impl FromStr for JoinToken {
    type Err = JoinTokenSyntax;
    fn from_str(s: &str) -> Result<Self, JoinTokenSyntax> {
        let mut parts = s.trim().splitn(3, '.');
        let (Some(PREFIX), Some(pin), Some(credential)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(JoinTokenSyntax);
        };
        if pin.len() != 64 || !is_lower_hex(pin) {
            return Err(JoinTokenSyntax);
        }
        let (id, secret) = JoinToken::split_credential(credential).ok_or(JoinTokenSyntax)?;
        let mut ca_sha256 = [0u8; 32];
        for (i, byte) in ca_sha256.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&pin[2 * i..2 * i + 2], 16).map_err(|_| JoinTokenSyntax)?;
        }
        Ok(JoinToken {
            ca_sha256,
            id: id.into(),
            secret: secret.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let t = JoinToken {
            ca_sha256: [0xab; 32],
            id: "0123456789abcdef".into(),
            secret: "s".repeat(40),
        };
        let text = t.to_string();
        assert_eq!(text.parse::<JoinToken>(), Ok(t.clone()));
        assert!(!format!("{t:?}").contains("sss"), "secret in Debug");
        assert_eq!(
            JoinToken::split_credential(&t.credential()),
            Some(("0123456789abcdef", &*"s".repeat(40)))
        );
        for bad in [
            "",
            "weftjoin",
            &text.replace("weftjoin", "weft"),
            &text.replace("abab", "ABAB"),
            &text[..text.len() - 20],
            &format!("{text}.extra"),
        ] {
            assert!(bad.parse::<JoinToken>().is_err(), "{bad}");
        }
    }
}
