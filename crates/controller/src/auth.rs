//! API tokens: bearer secrets stored hashed.
//!
//! A token reads `weft_<id>_<secret>`. The store keeps, under
//! `auth/tokens/<id>`, the SHA-256 of the secret, the project and the roles;
//! the secret itself is shown once, at creation. Verification hashes the
//! presented secret and compares in constant time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weft_model::Id;
use weft_store::{Store, StoreError, Txn, TxnOutcome};

use crate::keys;
use crate::policy::Caller;

/// How long a verified token is trusted without re-reading the store, so a
/// token revoked on another replica stops working within this delay.
const CACHE_TTL: Duration = Duration::from_secs(5);

/// A stored token (never holds the secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenRecord {
    /// Token id (the public part).
    pub id: String,
    /// Project the token acts in; absent for cluster-wide admin tokens.
    pub project: Option<Id>,
    /// Roles, e.g. admin, member, reader.
    pub roles: Vec<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
    /// Hex SHA-256 of the secret.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub secret_sha256: String,
}

impl TokenRecord {
    /// The record without its hash, for listing.
    pub fn public(&self) -> TokenRecord {
        TokenRecord {
            secret_sha256: String::new(),
            ..self.clone()
        }
    }
}

/// Why a presented token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token: send Authorization: Bearer <token> (see `weft token create`)")]
    Missing,
    /// Malformed, unknown, revoked or wrong secret.
    #[error("invalid or revoked token")]
    Invalid,
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Token storage and verification with a short-lived cache.
#[derive(Clone)]
pub struct Tokens {
    store: Arc<dyn Store>,
    cache: Arc<Mutex<HashMap<String, (TokenRecord, Instant)>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits `weft_<id>_<secret>`.
fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("weft_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() >= 32)
        .then_some((id, secret))
}

impl Tokens {
    /// Token handling over a store.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Tokens {
            store,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Creates a token; returns its record and the full secret token text
    /// (shown once).
    pub async fn create(
        &self,
        project: Option<Id>,
        roles: Vec<String>,
        description: String,
    ) -> Result<(TokenRecord, String), StoreError> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let record = TokenRecord {
            id: id.clone(),
            project,
            roles,
            description,
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            secret_sha256: sha256_hex(&secret),
        };
        let txn = Txn::new().when_mod_revision(keys::token(&id), 0).put(
            keys::token(&id),
            serde_json::to_vec(&record).expect("records serialize"),
        );
        match self.store.txn(txn).await? {
            TxnOutcome::Committed { .. } => Ok((record, format!("weft_{id}_{secret}"))),
            TxnOutcome::Failed { .. } => {
                Err(StoreError::Unavailable("token id collision; retry".into()))
            }
        }
    }

    /// True if any token exists (first-start detection).
    pub async fn any(&self) -> Result<bool, StoreError> {
        let r = self
            .store
            .range(weft_store::RangeRequest {
                prefix: keys::TOKENS.into(),
                start_after: None,
                limit: 1,
            })
            .await?;
        Ok(!r.kvs.is_empty())
    }

    /// All tokens, without hashes.
    pub async fn list(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let r = self
            .store
            .range(weft_store::RangeRequest {
                prefix: keys::TOKENS.into(),
                start_after: None,
                limit: 0,
            })
            .await?;
        Ok(r.kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<TokenRecord>(&kv.value).ok())
            .map(|t| t.public())
            .collect())
    }

    /// Revokes a token; false if it did not exist.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let (existing, _) = self.store.get(&keys::token(id)).await?;
        if existing.is_none() {
            return Ok(false);
        }
        self.store.txn(Txn::new().delete(keys::token(id))).await?;
        self.cache.lock().expect("token cache").remove(id);
        Ok(true)
    }

    /// Verifies a presented token and returns the caller it stands for.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let (id, secret) = split_token(token).ok_or(AuthError::Invalid)?;
        let cached = {
            let cache = self.cache.lock().expect("token cache");
            cache
                .get(id)
                .filter(|(_, at)| at.elapsed() < CACHE_TTL)
                .map(|(r, _)| r.clone())
        };
        let record = match cached {
            Some(r) => r,
            None => {
                let (kv, _) = self.store.get(&keys::token(id)).await?;
                let kv = kv.ok_or(AuthError::Invalid)?;
                let r: TokenRecord =
                    serde_json::from_slice(&kv.value).map_err(|_| AuthError::Invalid)?;
                self.cache
                    .lock()
                    .expect("token cache")
                    .insert(id.to_string(), (r.clone(), Instant::now()));
                r
            }
        };
        if !constant_time_eq(
            sha256_hex(secret).as_bytes(),
            record.secret_sha256.as_bytes(),
        ) {
            return Err(AuthError::Invalid);
        }
        Ok(Caller {
            token: record.id,
            project: record.project,
            roles: record.roles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_text_is_checked_before_any_lookup() {
        assert!(split_token("weft_0123456789abcdef_0123456789abcdef0123456789abcdef").is_some());
        for bad in [
            "",
            "Bearer x",
            "weft_short_0123456789abcdef0123456789abcdef",
            "weft_0123456789abcdeg_0123456789abcdef0123456789abcdef",
            "weft_0123456789abcdef_tooshort",
        ] {
            assert!(split_token(bad).is_none(), "{bad}");
        }
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
