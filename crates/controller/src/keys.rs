//! The controller's key layout in the store. Every key Weft writes is built
//! here, so the layout is visible in one place.

use weft_model::Kind;

/// Prefix of every intent object (`intent/<plural>/<id>`).
pub const INTENT: &str = "intent/";

/// The key every intent write bumps and compares, so writes from several
/// controller replicas serialize (a replica with a stale view fails its
/// compare, catches up and retries).
pub const INTENT_SEQ: &str = "meta/intent-seq";

/// The lock the replica running the singletons (the BGP speaker) holds.
pub const SINGLETONS: &str = "meta/singletons";

/// Prefix of API tokens (`auth/tokens/<token-id>`).
pub const TOKENS: &str = "auth/tokens/";

/// The key of an intent object.
pub fn object(kind: Kind, id: &str) -> String {
    format!("{INTENT}{}/{id}", kind.plural())
}

/// Splits an intent key into kind and id.
pub fn parse_object(key: &str) -> Option<(Kind, &str)> {
    let rest = key.strip_prefix(INTENT)?;
    let (plural, id) = rest.split_once('/')?;
    Some((Kind::from_name(plural)?, id))
}

/// The key of a token.
pub fn token(id: &str) -> String {
    format!("{TOKENS}{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_round_trip() {
        for kind in Kind::ALL {
            let k = object(kind, "abc-1");
            assert_eq!(parse_object(&k), Some((kind, "abc-1")));
        }
        assert_eq!(parse_object("intent/bogus/x"), None);
        assert_eq!(parse_object("auth/tokens/x"), None);
    }
}
