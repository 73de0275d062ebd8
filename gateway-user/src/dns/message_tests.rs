//! Table tests for [`super::answer`] and [`super::prepare`]: real queries built with hickory.

use std::cell::Cell;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn query_for(id: u16, name: Name, qtype: RecordType) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name, qtype));
    message
}

fn query(id: u16, name: &str, qtype: RecordType) -> Message {
    query_for(id, Name::from_ascii(name).unwrap(), qtype)
}

fn wire(message: &Message) -> Vec<u8> {
    message.to_vec().unwrap()
}

/// The daemon's decision, as a table: what each test name resolves to.
fn decide(name: &str, _qtype: RecordType) -> Resolution {
    match name {
        "api.example.test" => Resolution::Resolved(vec![ip("198.51.100.10"), ip("2001:db8::10")]),
        "v4only.example.test" => Resolution::Resolved(vec![ip("203.0.113.5")]),
        "denied.example.test" => Resolution::Denied("deny[0] denied.example.test".to_owned()),
        "broken.example.test" => Resolution::Failed("upstream down".to_owned()),
        _ => Resolution::NotFound,
    }
}

fn addresses(reply: &Message) -> Vec<IpAddr> {
    reply
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
            other => unreachable!("unexpected record {other:?}"),
        })
        .collect()
}

fn refused(reason: &str) -> Outcome {
    Outcome::Refused(reason.to_owned())
}

#[test]
fn answers_by_type_and_decision() {
    let mut two_questions = query(7, "api.example.test", RecordType::A);
    two_questions.add_query(Query::query(
        Name::from_ascii("v4only.example.test").unwrap(),
        RecordType::A,
    ));
    let mut chaos = query(7, "api.example.test", RecordType::A);
    chaos.queries[0].set_query_class(DNSClass::CH);
    let mut status = query(7, "api.example.test", RecordType::A);
    status.metadata.op_code = OpCode::Status;
    let mut edns_v1 = query(7, "api.example.test", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    edns_v1.set_edns(edns);
    let odd_name = Name::from_labels([b"a b".as_slice(), b"example", b"test"]).unwrap();
    let v6 = |s| vec![ip(s)];

    #[rustfmt::skip]
    let cases: Vec<(&str, Message, ResponseCode, Vec<IpAddr>, Outcome)> = vec![
        ("A from table", query(7, "api.example.test", RecordType::A), ResponseCode::NoError, vec![ip("198.51.100.10")], Outcome::Resolved(vec![ip("198.51.100.10")])),
        ("AAAA from table", query(7, "api.example.test", RecordType::AAAA), ResponseCode::NoError, v6("2001:db8::10"), Outcome::Resolved(v6("2001:db8::10"))),
        ("AAAA of v4-only name", query(7, "v4only.example.test", RecordType::AAAA), ResponseCode::NoError, vec![], Outcome::Resolved(vec![])),
        ("mixed case", query(7, "API.Example.TEST", RecordType::A), ResponseCode::NoError, vec![ip("198.51.100.10")], Outcome::Resolved(vec![ip("198.51.100.10")])),
        ("trailing dot", query(7, "api.example.test.", RecordType::A), ResponseCode::NoError, vec![ip("198.51.100.10")], Outcome::Resolved(vec![ip("198.51.100.10")])),
        ("denied", query(7, "denied.example.test", RecordType::A), ResponseCode::NXDomain, vec![], Outcome::Denied("deny[0] denied.example.test".to_owned())),
        ("unknown", query(7, "nope.example.test", RecordType::AAAA), ResponseCode::NXDomain, vec![], Outcome::NotFound),
        ("resolver failure", query(7, "broken.example.test", RecordType::A), ResponseCode::ServFail, vec![], Outcome::Failed("upstream down".to_owned())),
        ("HTTPS", query(7, "api.example.test", RecordType::HTTPS), ResponseCode::NoError, vec![], Outcome::Resolved(vec![])),
        ("SVCB", query(7, "api.example.test", RecordType::SVCB), ResponseCode::NoError, vec![], Outcome::Resolved(vec![])),
        ("HTTPS denied", query(7, "denied.example.test", RecordType::HTTPS), ResponseCode::NXDomain, vec![], Outcome::Denied("deny[0] denied.example.test".to_owned())),
        ("TXT", query(7, "api.example.test", RecordType::TXT), ResponseCode::Refused, vec![], refused("type TXT is not served")),
        ("MX", query(7, "api.example.test", RecordType::MX), ResponseCode::Refused, vec![], refused("type MX is not served")),
        ("ANY", query(7, "api.example.test", RecordType::ANY), ResponseCode::Refused, vec![], refused("type ANY is not served")),
        ("PTR", query(7, "10.100.51.198.in-addr.arpa", RecordType::PTR), ResponseCode::Refused, vec![], refused("type PTR is not served")),
        ("class CH", chaos, ResponseCode::Refused, vec![], refused("class CH is not served")),
        ("odd name", query_for(7, odd_name, RecordType::A), ResponseCode::Refused, vec![], refused("name has characters other than letters, digits, '-' and '_'")),
        ("root name", query_for(7, Name::root(), RecordType::A), ResponseCode::Refused, vec![], refused("the root name is not served")),
        ("opcode STATUS", status, ResponseCode::NotImp, vec![], refused("opcode Status is not served")),
        ("EDNS version 1", edns_v1, ResponseCode::BADVERS, vec![], refused("EDNS version 1 is not supported")),
        ("two questions", two_questions, ResponseCode::FormErr, vec![], Outcome::Malformed("expected exactly one question, got 2".to_owned())),
    ];
    for (what, request, rcode, want_addrs, want_outcome) in cases {
        let request = Message::from_vec(&wire(&request)).unwrap();
        let reply = answer(&wire(&request), decide);
        assert_eq!(reply.info.outcome, want_outcome, "{what}");
        let response = Message::from_vec(&reply.bytes.unwrap()).unwrap();
        // Compare numbers: 16 decodes as BADSIG, which shares its code with BADVERS.
        assert_eq!(
            u16::from(response.response_code),
            u16::from(rcode),
            "{what}"
        );
        assert_eq!(response.id, 7, "{what}: id echoed");
        assert_eq!(response.message_type, MessageType::Response, "{what}");
        assert_eq!(response.queries, request.queries, "{what}: question echoed");
        assert_eq!(addresses(&response), want_addrs, "{what}");
        assert!(!response.truncation, "{what}");
    }
}

#[test]
fn reply_header_and_records_follow_the_query() {
    let request = query(0xbeef, "Api.Example.Test", RecordType::A);
    let seen = Cell::new(None);
    let reply = answer(&wire(&request), |name, qtype| {
        seen.set(Some((name.to_owned(), qtype)));
        decide(name, qtype)
    });
    assert_eq!(
        seen.take(),
        Some(("api.example.test".to_owned(), RecordType::A))
    );
    let question = reply.info.question.clone().unwrap();
    assert_eq!(
        question,
        Question {
            name: "api.example.test".to_owned(),
            qtype: RecordType::A
        }
    );

    let response = Message::from_vec(&reply.bytes.unwrap()).unwrap();
    assert_eq!(response.id, 0xbeef);
    assert!(response.recursion_desired && response.recursion_available);
    assert!(!response.authoritative);
    let [record] = response.answers.as_slice() else {
        unreachable!("one answer expected")
    };
    assert_eq!(record.ttl, ANSWER_TTL);
    assert_eq!(
        record.name.to_ascii(),
        "Api.Example.Test.",
        "owner keeps the client's case"
    );
    assert!(response.edns.is_none(), "no OPT without one in the query");
}

#[test]
fn refused_types_never_reach_the_decision() {
    for qtype in [
        RecordType::TXT,
        RecordType::NULL,
        RecordType::CNAME,
        RecordType::SOA,
    ] {
        let request = query(1, "api.example.test", qtype);
        let reply = answer(&wire(&request), |_, _| {
            unreachable!("decided a {qtype} query")
        });
        assert_eq!(reply.info.outcome.label(), "refused");
        assert!(matches!(prepare(&wire(&request)), Prepared::Done(_)));
    }
    let request = query(1, "api.example.test", RecordType::AAAA);
    assert!(matches!(prepare(&wire(&request)), Prepared::Resolve(_)));
}

#[test]
fn unreadable_datagrams_are_dropped_and_broken_bodies_get_formerr() {
    for datagram in [&[][..], &[0x12][..], &[0x12, 0x34, 0x01, 0x00, 0x00][..]] {
        let reply = answer(datagram, decide);
        assert_eq!(reply.bytes, None, "{datagram:?}");
        assert_eq!(reply.info.outcome.label(), "malformed");
    }
    // A readable header announcing one question, then nothing.
    let header_only = [0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    let reply = answer(&header_only, decide);
    assert_eq!(reply.info.outcome.label(), "malformed");
    assert_eq!(reply.info.question, None);
    let response = Message::from_vec(&reply.bytes.unwrap()).unwrap();
    assert_eq!(
        (response.id, response.response_code),
        (0x1234, ResponseCode::FormErr)
    );
    assert!(response.recursion_desired);

    // Responses are never answered (no reflection loops), readable or not.
    let mut response = query(9, "api.example.test", RecordType::A);
    response.metadata.message_type = MessageType::Response;
    let bytes = wire(&response);
    for datagram in [&bytes[..], &bytes[..14]] {
        let reply = answer(datagram, decide);
        assert_eq!(reply.bytes, None);
        assert_eq!(
            reply.info.outcome,
            Outcome::Malformed("datagram is a DNS response, not a query".to_owned())
        );
    }
}

#[test]
fn every_prefix_of_a_query_is_handled_without_panicking() {
    let mut request = query(3, "api.example.test", RecordType::AAAA);
    request.set_edns(Edns::new());
    let bytes = wire(&request);
    for len in 0..bytes.len() {
        let reply = answer(&bytes[..len], decide);
        assert_eq!(reply.bytes.is_some(), len >= 12, "prefix of {len} bytes");
        assert_eq!(
            reply.info.outcome.label(),
            "malformed",
            "prefix of {len} bytes"
        );
    }
    assert_eq!(answer(&bytes, decide).info.outcome.label(), "resolved");
}

#[test]
fn big_answers_are_capped_and_truncated_to_fit() {
    let many: Vec<IpAddr> = (0..100u8)
        .map(|i| IpAddr::from([198, 51, 100, i]))
        .collect();
    let plain = query(5, "api.example.test", RecordType::A);
    let reply = answer(&wire(&plain), |_, _| Resolution::Resolved(many.clone()));
    let bytes = reply.bytes.unwrap();
    assert!(bytes.len() <= 512, "{} bytes", bytes.len());
    let response = Message::from_vec(&bytes).unwrap();
    assert!(response.truncation);
    assert!(!response.answers.is_empty() && response.answers.len() < MAX_ANSWERS);

    let mut with_edns = plain.clone();
    with_edns.set_edns(Edns::new().set_max_payload(4096).clone());
    let reply = answer(&wire(&with_edns), |_, _| Resolution::Resolved(many.clone()));
    let response = Message::from_vec(&reply.bytes.unwrap()).unwrap();
    assert!(!response.truncation);
    assert_eq!(response.answers.len(), MAX_ANSWERS);
    assert_eq!(response.edns.map(|e| e.max_payload()), Some(1232));
    assert_eq!(
        reply.info.outcome,
        Outcome::Resolved(many[..MAX_ANSWERS].to_vec())
    );
}

#[test]
fn question_of_reads_the_name_for_audit() {
    let request = query(1, "Data.Exfil.Example.Test.", RecordType::TXT);
    let want = Question {
        name: "data.exfil.example.test".to_owned(),
        qtype: RecordType::TXT,
    };
    assert_eq!(question_of(&wire(&request)), Some(want));
    assert_eq!(question_of(&[1, 2, 3]), None);
}
