//! Wire format: a thin layer over `netgauze-bgp-pkt`.
//!
//! netgauze parses and writes OPEN, UPDATE (MP_REACH/MP_UNREACH for VPNv4 and
//! EVPN, extended communities) and ROUTE-REFRESH. This layer adds what it
//! lacks or what we want stricter:
//! - framing of a TCP byte stream into messages, with header checks done
//!   here (marker, length bounds) so that a bad header is answered with the
//!   right NOTIFICATION before netgauze sees the body;
//! - NOTIFICATION is read and written here (code, subcode, data), so every
//!   code/subcode can be sent, including ones netgauze has no variant for;
//! - the RFC 9012 Encapsulation extended community (transitive opaque,
//!   sub-type 0x0c), which netgauze only knows as "unassigned";
//! - conversion between Weft's route types and netgauze's.
//!
//! Nothing here touches sockets or clocks.

pub mod ext;
pub mod open;
pub mod update;

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;

/// Length of the fixed BGP header (marker, length, type).
pub const HEADER_LEN: usize = 19;
/// Largest message without the Extended Message capability (RFC 8654),
/// which this speaker does not advertise.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Message type codes (RFC 4271 section 4.1, RFC 2918).
pub mod msg_type {
    /// OPEN.
    pub const OPEN: u8 = 1;
    /// UPDATE.
    pub const UPDATE: u8 = 2;
    /// NOTIFICATION.
    pub const NOTIFICATION: u8 = 3;
    /// KEEPALIVE.
    pub const KEEPALIVE: u8 = 4;
    /// ROUTE-REFRESH.
    pub const ROUTE_REFRESH: u8 = 5;
}

/// A NOTIFICATION message: error code, subcode and data (RFC 4271 4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Diagnostic data.
    pub data: Vec<u8>,
}

impl Notification {
    /// A notification without data.
    pub fn new(code: u8, subcode: u8) -> Self {
        Self {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    /// A notification with data.
    pub fn with_data(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Self {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// The whole message on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Data longer than a message can hold is cut, not an error.
        let data = &self.data[..self.data.len().min(MAX_MESSAGE_LEN - HEADER_LEN - 2)];
        let mut out = header(msg_type::NOTIFICATION, HEADER_LEN + 2 + data.len());
        out.push(self.code);
        out.push(self.subcode);
        out.extend_from_slice(data);
        out
    }

    /// Parses the body of a NOTIFICATION (after the header).
    pub fn parse_body(body: &[u8]) -> Option<Self> {
        match body {
            [code, subcode, data @ ..] => Some(Self::with_data(*code, *subcode, data)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = match self.code {
            1 => "message header error",
            2 => "OPEN message error",
            3 => "UPDATE message error",
            4 => "hold timer expired",
            5 => "finite state machine error",
            6 => "cease",
            7 => "route-refresh message error",
            _ => "unknown error",
        };
        write!(f, "{code} ({}/{})", self.code, self.subcode)?;
        if self.code == 6 && (self.subcode == 2 || self.subcode == 4) {
            // RFC 9003 shutdown communication: a length byte and UTF-8 text.
            if let Some((&len, text)) = self.data.split_first()
                && let Some(text) = text.get(..len as usize)
                && let Ok(text) = std::str::from_utf8(text)
                && !text.is_empty()
            {
                write!(f, ": {text}")?;
            }
        }
        Ok(())
    }
}

/// NOTIFICATION codes and subcodes used by the speaker.
pub mod codes {
    /// Message header error.
    pub const HEADER: u8 = 1;
    /// Connection not synchronized.
    pub const HEADER_NOT_SYNC: u8 = 1;
    /// Bad message length.
    pub const HEADER_BAD_LENGTH: u8 = 2;
    /// Bad message type.
    pub const HEADER_BAD_TYPE: u8 = 3;
    /// OPEN message error.
    pub const OPEN: u8 = 2;
    /// Unsupported version number.
    pub const OPEN_BAD_VERSION: u8 = 1;
    /// Bad peer AS.
    pub const OPEN_BAD_PEER_AS: u8 = 2;
    /// Bad BGP identifier.
    pub const OPEN_BAD_ID: u8 = 3;
    /// Unacceptable hold time.
    pub const OPEN_BAD_HOLD: u8 = 6;
    /// Unsupported capability.
    pub const OPEN_UNSUPPORTED_CAP: u8 = 7;
    /// UPDATE message error.
    pub const UPDATE: u8 = 3;
    /// Malformed attribute list.
    pub const UPDATE_MALFORMED_ATTRS: u8 = 1;
    /// Missing well-known attribute.
    pub const UPDATE_MISSING_WELL_KNOWN: u8 = 3;
    /// Optional attribute error.
    pub const UPDATE_OPTIONAL_ATTR: u8 = 9;
    /// Invalid network field.
    pub const UPDATE_INVALID_NETWORK: u8 = 10;
    /// Malformed AS_PATH.
    pub const UPDATE_MALFORMED_AS_PATH: u8 = 11;
    /// Hold timer expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite state machine error.
    pub const FSM: u8 = 5;
    /// Unexpected message in OpenSent.
    pub const FSM_OPEN_SENT: u8 = 1;
    /// Unexpected message in OpenConfirm.
    pub const FSM_OPEN_CONFIRM: u8 = 2;
    /// Unexpected message in Established.
    pub const FSM_ESTABLISHED: u8 = 3;
    /// Cease.
    pub const CEASE: u8 = 6;
    /// Administrative shutdown.
    pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
    /// Peer de-configured.
    pub const CEASE_PEER_DECONFIGURED: u8 = 3;
    /// Connection rejected.
    pub const CEASE_CONNECTION_REJECTED: u8 = 5;
    /// Other configuration change.
    pub const CEASE_CONFIG_CHANGE: u8 = 6;
    /// Connection collision resolution.
    pub const CEASE_COLLISION: u8 = 7;
    /// ROUTE-REFRESH message error.
    pub const ROUTE_REFRESH: u8 = 7;
    /// Invalid message length.
    pub const ROUTE_REFRESH_BAD_LENGTH: u8 = 1;
}

/// A fixed header for a message of `len` bytes in all, body to follow.
fn header(msg_type: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.push(msg_type);
    out
}

/// A KEEPALIVE message.
pub fn keepalive() -> Vec<u8> {
    header(msg_type::KEEPALIVE, HEADER_LEN)
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// OPEN, UPDATE, KEEPALIVE or ROUTE-REFRESH as netgauze parsed it.
    Bgp(BgpMessage),
    /// NOTIFICATION, parsed here.
    Notification(Notification),
    /// A ROUTE-REFRESH for an address family we do not speak, which RFC
    /// 2918 section 4 says to ignore.
    IgnoredRouteRefresh,
}

/// Finds the first whole message in `buf`.
///
/// Returns `Ok(None)` while more bytes are needed, `Ok(Some(len))` when the
/// first `len` bytes are one message, and the NOTIFICATION to send when the
/// header is invalid (the stream cannot be resynchronized after that).
pub fn frame(buf: &[u8]) -> Result<Option<usize>, Notification> {
    if buf.len() < HEADER_LEN {
        // A marker error can be reported before the whole header arrives.
        if buf.iter().take(16).any(|b| *b != 0xff) {
            return Err(Notification::new(codes::HEADER, codes::HEADER_NOT_SYNC));
        }
        return Ok(None);
    }
    if buf[..16].iter().any(|b| *b != 0xff) {
        return Err(Notification::new(codes::HEADER, codes::HEADER_NOT_SYNC));
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]) as usize;
    let msg_type = buf[18];
    let min_len = match msg_type {
        msg_type::OPEN => HEADER_LEN + 10,
        msg_type::UPDATE => HEADER_LEN + 4,
        msg_type::NOTIFICATION => HEADER_LEN + 2,
        msg_type::KEEPALIVE => HEADER_LEN,
        msg_type::ROUTE_REFRESH => HEADER_LEN + 4,
        other => {
            return Err(Notification::with_data(
                codes::HEADER,
                codes::HEADER_BAD_TYPE,
                [other],
            ));
        }
    };
    let max_len = if msg_type == msg_type::KEEPALIVE {
        HEADER_LEN
    } else {
        MAX_MESSAGE_LEN
    };
    if len < min_len || len > max_len {
        return Err(Notification::with_data(
            codes::HEADER,
            codes::HEADER_BAD_LENGTH,
            (len as u16).to_be_bytes(),
        ));
    }
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(len))
}

/// Decodes one framed message (as returned by [`frame`]).
///
/// `ctx` carries what the session negotiated (4-byte AS). A malformed body
/// returns the NOTIFICATION to send.
pub fn decode(msg: &[u8], ctx: &mut BgpParsingContext) -> Result<Message, Notification> {
    if msg.len() >= HEADER_LEN && msg[18] == msg_type::NOTIFICATION {
        return Notification::parse_body(&msg[HEADER_LEN..])
            .map(Message::Notification)
            .ok_or_else(|| {
                Notification::with_data(
                    codes::HEADER,
                    codes::HEADER_BAD_LENGTH,
                    (msg.len() as u16).to_be_bytes(),
                )
            });
    }
    if msg.len() >= HEADER_LEN && msg[18] == msg_type::ROUTE_REFRESH && msg.len() != HEADER_LEN + 4
    {
        return Err(Notification::with_data(
            codes::ROUTE_REFRESH,
            codes::ROUTE_REFRESH_BAD_LENGTH,
            msg.to_vec(),
        ));
    }
    if msg.len() == HEADER_LEN + 4 && msg[18] == msg_type::ROUTE_REFRESH {
        let afi = u16::from_be_bytes([msg[19], msg[20]]);
        let safi = msg[22];
        if !matches!((afi, safi), (1, 128) | (25, 70)) {
            return Ok(Message::IgnoredRouteRefresh);
        }
    }
    let mut cur = SliceReader::new(msg);
    match BgpMessage::parse(&mut cur, ctx) {
        Ok(m) if cur.is_empty() => Ok(Message::Bgp(m)),
        Ok(_) => Err(Notification::with_data(
            codes::HEADER,
            codes::HEADER_BAD_LENGTH,
            (msg.len() as u16).to_be_bytes(),
        )),
        Err(e) => {
            let n: netgauze_bgp_pkt::notification::BgpNotificationMessage = e.into();
            Err(from_netgauze_notification(n))
        }
    }
}

/// Converts netgauze's notification enum to code/subcode/data by writing it.
fn from_netgauze_notification(
    n: netgauze_bgp_pkt::notification::BgpNotificationMessage,
) -> Notification {
    let msg = BgpMessage::Notification(n);
    let mut buf = Vec::with_capacity(msg.len());
    match msg.write(&mut buf) {
        Ok(()) if buf.len() >= HEADER_LEN + 2 => {
            Notification::parse_body(&buf[HEADER_LEN..]).unwrap_or(Notification::new(1, 0))
        }
        // Writing a notification should not fail; if it does, fall back to
        // an unspecific header error rather than dropping the error.
        _ => Notification::new(codes::HEADER, 0),
    }
}

/// Encodes a netgauze message; messages we build are always encodable,
/// so a failure is reported as an error string for the caller to log.
pub fn encode(msg: &BgpMessage) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(msg.len());
    msg.write(&mut buf)
        .map_err(|e| format!("cannot encode {:?} message: {e}", msg.get_type()))?;
    Ok(buf)
}

/// A parsing context for a session: 4-byte AS as negotiated; malformed
/// attributes and capabilities are errors (answered with NOTIFICATION),
/// except capability errors, which are tolerated so that a peer with an
/// odd optional capability can still connect.
pub fn parsing_context(asn4: bool) -> BgpParsingContext {
    BgpParsingContext::new(
        asn4,
        Default::default(),
        Default::default(),
        true,
        true,
        false,
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_waits_for_whole_messages() {
        let ka = keepalive();
        assert_eq!(frame(&ka[..10]).unwrap(), None);
        assert_eq!(frame(&ka).unwrap(), Some(19));
        let mut two = ka.clone();
        two.extend_from_slice(&ka[..5]);
        assert_eq!(frame(&two).unwrap(), Some(19));
    }

    #[test]
    fn framing_rejects_bad_headers() {
        let mut bad_marker = keepalive();
        bad_marker[3] = 0;
        assert_eq!(frame(&bad_marker).unwrap_err(), Notification::new(1, 1));
        let mut bad_type = keepalive();
        bad_type[18] = 9;
        assert_eq!(
            frame(&bad_type).unwrap_err(),
            Notification::with_data(1, 3, [9])
        );
        let mut long_keepalive = keepalive();
        long_keepalive[17] = 20;
        assert_eq!(
            frame(&long_keepalive).unwrap_err(),
            Notification::with_data(1, 2, [0, 20])
        );
        let mut huge = keepalive();
        huge[18] = msg_type::UPDATE;
        huge[16] = 0x20;
        huge[17] = 0x01;
        assert_eq!(frame(&huge).unwrap_err().subcode, codes::HEADER_BAD_LENGTH);
    }

    #[test]
    fn notification_roundtrip() {
        let n = Notification::with_data(6, 2, [3, b'b', b'y', b'e']);
        let bytes = n.to_bytes();
        assert_eq!(frame(&bytes).unwrap(), Some(bytes.len()));
        let mut ctx = parsing_context(true);
        assert_eq!(
            decode(&bytes, &mut ctx).unwrap(),
            Message::Notification(n.clone())
        );
        assert_eq!(n.to_string(), "cease (6/2): bye");
    }

    #[test]
    fn keepalive_decodes() {
        let mut ctx = parsing_context(true);
        assert_eq!(
            decode(&keepalive(), &mut ctx).unwrap(),
            Message::Bgp(BgpMessage::KeepAlive)
        );
    }
}
