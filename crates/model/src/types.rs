//! Small value types of the model: ids, MAC addresses, route distinguishers
//! and route targets. Each parses from and prints to the text form users
//! type, and rejects malformed input with a message saying what is expected.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Implements `ToSchema` for a type that travels as a JSON string.
macro_rules! string_schema {
    ($ty:ty, $desc:expr, $example:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some($desc))
                    .examples([serde_json::json!($example)])
                    .into()
            }
        }
        impl utoipa::ToSchema for $ty {}
    };
}

/// Implements `Serialize`/`Deserialize` through `Display`/`FromStr`.
macro_rules! serde_via_str {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A stable object id. Ids are opaque strings chosen by the controller
/// (UUIDs in practice); tests may use readable ones.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Id(String);

impl Id {
    /// Wraps a string as an id.
    pub fn new(s: impl Into<String>) -> Self {
        Id(s.into())
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id(s.to_string())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id(s)
    }
}

impl std::borrow::Borrow<str> for Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

string_schema!(Id, "Object id", "3f1c0e4a-8d2b-4b7e-9a51-2f7c1d0e9b10");

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The broadcast address.
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// True for group (multicast or broadcast) addresses.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    /// True for the all-zero address.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

/// A malformed MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets like fa:16:3e:12:34:56")]
pub struct MacParseError(pub String);

impl FromStr for Mac {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(err)?;
            if p.len() != 2 {
                return Err(err());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

serde_via_str!(Mac);
string_schema!(Mac, "MAC address", "fa:16:3e:12:34:56");

/// The administrator and assigned-number parts shared by route
/// distinguishers and route targets (RFC 4364 section 4.2, RFC 4360).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum AdminValue {
    /// Type 0: a 2-byte AS number and a 4-byte assigned number (`ASN16:NN32`).
    As2 {
        /// The AS number.
        asn: u16,
        /// The assigned number.
        value: u32,
    },
    /// Type 1: an IPv4 address and a 2-byte assigned number (`IPv4:NN16`).
    Ipv4 {
        /// The administrator address.
        addr: Ipv4Addr,
        /// The assigned number.
        value: u16,
    },
    /// Type 2: a 4-byte AS number and a 2-byte assigned number (`ASN32:NN16`).
    As4 {
        /// The AS number.
        asn: u32,
        /// The assigned number.
        value: u16,
    },
}

/// A malformed route distinguisher or route target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {what} {input:?}: {why}; expected ASN16:NN32 (64512:100), IPv4:NN16 (192.0.2.1:100) or ASN32:NN16 (4200000000:100)"
)]
pub struct AdminValueParseError {
    /// "route distinguisher" or "route target".
    pub what: &'static str,
    /// The text given.
    pub input: String,
    /// What was wrong with it.
    pub why: String,
}

impl AdminValue {
    fn parse(s: &str, what: &'static str) -> Result<Self, AdminValueParseError> {
        let err = |why: &str| AdminValueParseError {
            what,
            input: s.to_string(),
            why: why.to_string(),
        };
        let (admin, value) = s
            .rsplit_once(':')
            .ok_or_else(|| err("missing ':' between administrator and assigned number"))?;
        if admin.is_empty() || value.is_empty() {
            return Err(err("empty administrator or assigned number"));
        }
        if !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("assigned number is not a decimal number"));
        }
        if admin.contains('.') {
            let addr: Ipv4Addr = admin
                .parse()
                .map_err(|_| err("administrator is neither an AS number nor an IPv4 address"))?;
            let value: u16 = value.parse().map_err(|_| {
                err("with an IPv4 administrator the assigned number must fit 16 bits (0-65535)")
            })?;
            return Ok(AdminValue::Ipv4 { addr, value });
        }
        if !admin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(
                "administrator is neither an AS number nor an IPv4 address",
            ));
        }
        let asn: u64 = admin.parse().map_err(|_| err("AS number too large"))?;
        let value: u64 = value
            .parse()
            .map_err(|_| err("assigned number too large"))?;
        if asn <= u16::MAX as u64 {
            let value = u32::try_from(value)
                .map_err(|_| err("with a 2-byte AS number the assigned number must fit 32 bits"))?;
            Ok(AdminValue::As2 {
                asn: asn as u16,
                value,
            })
        } else if asn <= u32::MAX as u64 {
            let value = u16::try_from(value).map_err(|_| {
                err("with a 4-byte AS number the assigned number must fit 16 bits (0-65535)")
            })?;
            Ok(AdminValue::As4 {
                asn: asn as u32,
                value,
            })
        } else {
            Err(err("AS number larger than 4294967295"))
        }
    }
}

impl fmt::Display for AdminValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminValue::As2 { asn, value } => write!(f, "{asn}:{value}"),
            AdminValue::Ipv4 { addr, value } => write!(f, "{addr}:{value}"),
            AdminValue::As4 { asn, value } => write!(f, "{asn}:{value}"),
        }
    }
}

/// A route distinguisher (RFC 4364), making a VRF's prefixes unique in BGP.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RouteDistinguisher(pub AdminValue);

impl FromStr for RouteDistinguisher {
    type Err = AdminValueParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AdminValue::parse(s, "route distinguisher").map(RouteDistinguisher)
    }
}

impl fmt::Display for RouteDistinguisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

serde_via_str!(RouteDistinguisher);
string_schema!(
    RouteDistinguisher,
    "Route distinguisher: ASN16:NN32, IPv4:NN16 or ASN32:NN16",
    "64512:100"
);

/// A route target extended community (RFC 4360), selecting which VRFs
/// import a route.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RouteTarget(pub AdminValue);

impl FromStr for RouteTarget {
    type Err = AdminValueParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AdminValue::parse(s, "route target").map(RouteTarget)
    }
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

serde_via_str!(RouteTarget);
string_schema!(
    RouteTarget,
    "Route target: ASN16:NN32, IPv4:NN16 or ASN32:NN16",
    "64512:100"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip_and_errors() {
        let m: Mac = "FA:16:3e:00:0a:ff".parse().unwrap();
        assert_eq!(m.to_string(), "fa:16:3e:00:0a:ff");
        assert_eq!("fa-16-3e-00-0a-ff".parse::<Mac>().unwrap(), m);
        for bad in [
            "",
            "fa:16:3e:00:0a",
            "fa:16:3e:00:0a:ff:00",
            "fa:16:3e:00:0a:fg",
            "fa:16:3e:00:0a:f",
            "fa:16:3e:00:0a:fff",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn route_distinguisher_forms() {
        let cases = [
            (
                "64512:100",
                AdminValue::As2 {
                    asn: 64512,
                    value: 100,
                },
            ),
            (
                "1:4294967295",
                AdminValue::As2 {
                    asn: 1,
                    value: u32::MAX,
                },
            ),
            (
                "192.0.2.1:7",
                AdminValue::Ipv4 {
                    addr: Ipv4Addr::new(192, 0, 2, 1),
                    value: 7,
                },
            ),
            (
                "4200000000:65535",
                AdminValue::As4 {
                    asn: 4_200_000_000,
                    value: 65535,
                },
            ),
        ];
        for (text, want) in cases {
            let rd: RouteDistinguisher = text.parse().unwrap();
            assert_eq!(rd.0, want, "{text}");
            assert_eq!(rd.to_string(), text);
            let rt: RouteTarget = text.parse().unwrap();
            assert_eq!(rt.to_string(), text);
        }
    }

    #[test]
    fn route_distinguisher_errors_say_why() {
        for (bad, why) in [
            ("64512", "missing ':'"),
            ("64512:", "empty"),
            ("abc:1", "neither an AS number nor an IPv4 address"),
            ("192.0.2.1:70000", "fit 16 bits"),
            ("4200000000:70000", "fit 16 bits"),
            ("1:4294967296", "fit 32 bits"),
            ("4294967296:1", "larger than"),
            ("1:-1", "not a decimal"),
            ("300.0.0.1:1", "neither"),
        ] {
            let e = bad.parse::<RouteDistinguisher>().unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }
}
