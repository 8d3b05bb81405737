//! DNS for the names of a network's ports (OVN to-do "Native DNS"): A and
//! AAAA queries for `name` or `name.<domain>` are answered authoritatively
//! from the compiled records; other names in the domain get NXDOMAIN; names
//! outside it get REFUSED (this is not a recursive resolver).

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use weft_compiler::ServiceConfig;

use crate::{Request, udp_frame};

/// TTL of answers: short, since ports come and go.
pub const TTL: u32 = 30;

/// Answers a DNS query, or `None` if it is not one.
pub fn answer(cfg: &ServiceConfig, req: &Request<'_>) -> Option<Vec<u8>> {
    let ServiceConfig::Dns {
        domain, records, ..
    } = cfg
    else {
        return None;
    };
    let (sport, 53) = req.udp? else {
        return None;
    };
    let q = Message::from_vec(req.payload).ok()?;
    if q.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut resp = Message::response(q.metadata.id, OpCode::Query);
    resp.metadata.recursion_desired = q.metadata.recursion_desired;
    resp.metadata.authoritative = true;
    if q.metadata.op_code != OpCode::Query || q.queries.len() != 1 {
        resp.metadata.response_code = ResponseCode::NotImp;
    } else {
        let query = &q.queries[0];
        resp.add_query(query.clone());
        let asked = query
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let dom = domain.trim_end_matches('.').to_ascii_lowercase();
        let short = asked
            .strip_suffix(&format!(".{dom}"))
            .unwrap_or(&asked)
            .to_string();
        let in_zone = asked == short && !asked.contains('.') || asked.ends_with(&dom);
        match records.iter().find(|(n, _)| n.eq_ignore_ascii_case(&short)) {
            Some((_, ips)) => {
                for ip in ips {
                    let rdata = match (query.query_type(), ip) {
                        (RecordType::A, std::net::IpAddr::V4(a)) => RData::A(A(*a)),
                        (RecordType::AAAA, std::net::IpAddr::V6(a)) => RData::AAAA(AAAA(*a)),
                        _ => continue,
                    };
                    resp.add_answer(Record::from_rdata(query.name().clone(), TTL, rdata));
                }
            }
            None if in_zone => resp.metadata.response_code = ResponseCode::NXDomain,
            None => resp.metadata.response_code = ResponseCode::Refused,
        }
    }
    let payload = resp.to_vec().ok()?;
    // From the address and MAC the client asked (the gateway).
    Some(udp_frame(
        req.eth_dst,
        req.eth_src,
        req.ip_dst,
        req.ip_src,
        53,
        sport,
        payload,
    ))
}

/// A name as DNS wants it (for tests and tools).
pub fn name(s: &str) -> Option<Name> {
    Name::from_ascii(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use hickory_proto::op::Query;
    use weft_pipeline::MacAddr;

    fn cfg() -> ServiceConfig {
        ServiceConfig::Dns {
            context: "net-1".into(),
            domain: "net1.weft.internal".into(),
            records: vec![
                ("g1".into(), vec!["10.1.1.5".parse().unwrap()]),
                (
                    "g3".into(),
                    vec!["10.1.1.6".parse().unwrap(), "2001:db8::6".parse().unwrap()],
                ),
            ],
        }
    }

    fn query(name: &str, ty: RecordType) -> Vec<u8> {
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
        udp_frame(
            MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]),
            MacAddr([0x02, 0x57, 0, 0, 0, 1]),
            "10.1.1.5".parse().unwrap(),
            "10.1.1.1".parse().unwrap(),
            40000,
            53,
            m.to_vec().unwrap(),
        )
    }

    fn ask(name: &str, ty: RecordType) -> Message {
        let f = query(name, ty);
        let reply = answer(&cfg(), &parse(&f).unwrap()).unwrap();
        let r = parse(&reply).unwrap();
        assert_eq!(r.udp, Some((53, 40000)));
        assert_eq!(r.ip_src, "10.1.1.1".parse::<std::net::IpAddr>().unwrap());
        Message::from_vec(r.payload).unwrap()
    }

    #[test]
    fn names_of_the_network_resolve() {
        for n in ["g3", "g3.net1.weft.internal.", "G3.NET1.weft.internal"] {
            let m = ask(n, RecordType::A);
            assert_eq!(m.metadata.id, 0x4242);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{n}");
            assert_eq!(m.answers.len(), 1, "{n}");
            assert_eq!(m.answers[0].data, RData::A(A("10.1.1.6".parse().unwrap())));
        }
        let m = ask("g3", RecordType::AAAA);
        assert_eq!(
            m.answers[0].data,
            RData::AAAA(AAAA("2001:db8::6".parse().unwrap()))
        );
        // A name with no AAAA: no error, no answer.
        assert!(ask("g1", RecordType::AAAA).answers.is_empty());
    }

    #[test]
    fn unknown_names_and_other_zones() {
        assert_eq!(
            ask("nobody", RecordType::A).metadata.response_code,
            ResponseCode::NXDomain
        );
        assert_eq!(
            ask("nobody.net1.weft.internal", RecordType::A)
                .metadata
                .response_code,
            ResponseCode::NXDomain
        );
        assert_eq!(
            ask("example.com", RecordType::A).metadata.response_code,
            ResponseCode::Refused
        );
    }

    #[test]
    fn garbage_is_ignored() {
        let mut f = query("g1", RecordType::A);
        let n = f.len();
        f[n - 6] ^= 0xff;
        let _ = parse(&f).and_then(|r| answer(&cfg(), &r));
        let f = udp_frame(
            MacAddr([2; 6]),
            MacAddr([3; 6]),
            "10.1.1.5".parse().unwrap(),
            "10.1.1.1".parse().unwrap(),
            1,
            53,
            vec![1, 2, 3],
        );
        assert!(answer(&cfg(), &parse(&f).unwrap()).is_none());
    }
}
