//! Table tests of the HTTP/1 sniffer.

use crate::detect::http1::{Error, Http1Request, parse};

fn request(method: &str, target: &str, host: Option<&str>) -> Result<Http1Request, Error> {
    Ok(Http1Request {
        method: method.into(),
        target: target.into(),
        host: host.map(|h| crate::host::Host::from_authority(h).unwrap().0),
        port: host.and_then(|h| crate::host::Host::from_authority(h).unwrap().1),
    })
}

#[test]
fn detect_http1_table() {
    let m = Error::Malformed;
    let cases: &[(&[u8], Result<Http1Request, Error>)] = &[
        (b"GET / HTTP/1.1\r\nHost: API.Example.test\r\n\r\n", request("GET", "/", Some("api.example.test"))),
        (b"POST /v1/messages HTTP/1.1\r\nhost: api.example.test:8080\r\nContent-Length: 2\r\n\r\n{}", request("POST", "/v1/messages", Some("api.example.test:8080"))),
        (b"CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\nProxy-Authorization: Basic eA==\r\n\r\n", request("CONNECT", "api.example.test:443", Some("api.example.test:443"))),
        (b"GET http://a.example.test/x HTTP/1.1\r\nHost: a.example.test\r\n\r\n", request("GET", "http://a.example.test/x", Some("a.example.test"))),
        (b"OPTIONS * HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", request("OPTIONS", "*", Some("[2001:db8::1]:80"))),
        (b"PROPFIND /dav HTTP/1.1\r\nHost: dav.example.test\r\n\r\n", request("PROPFIND", "/dav", Some("dav.example.test"))),
        (b"GET / HTTP/1.0\r\n\r\n", request("GET", "/", None)),
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", request("GET", "/", None)),
        (b"GET / HTTP/1.1\r\nHost: a.test\r\nHOST: b.test\r\n\r\n", Err(m("more than one Host header"))),
        (b"GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n", Err(m("Host header is not a valid authority"))),
        (b"GET / HTTP/1.1\r\nHost: a.test/evil\r\n\r\n", Err(m("Host header is not a valid authority"))),
        (b"GET / HTTP/1.1\r\nHost: a .test\r\n\r\n", Err(m("Host header is not a valid authority"))),
        (b"GET / HTTP/1.1\r\nHost: a.test:99999\r\n\r\n", Err(m("Host header is not a valid authority"))),
        (b"GET / HTTP/1.1\r\nHost: a..test\r\n\r\n", Err(m("Host header is not a valid authority"))),
        (b"GET / HTTP/1.1\r\nHost: [2001:db8::1\r\n\r\n", Err(m("Host header is not a valid authority"))),
        (b"GET / HTTP/2.0\r\n\r\n", Err(m("not HTTP/1.0 or HTTP/1.1"))),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", Err(m("invalid header name"))),
        (b"GET  / HTTP/1.1\r\n\r\n", Err(m("invalid method or token"))),
        (b"GET / HTTP/1.1\r\nHost: a.test\r\n", Err(Error::Incomplete)),
        (b"GET /", Err(Error::Incomplete)),
        (b"GE", Err(Error::Incomplete)),
        (b"", Err(Error::Incomplete)),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n", Err(Error::Incomplete)),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04", Err(Error::NotHttp)),
        (b"SSH-2.0-OpenSSH_9.6\r\n", Err(Error::NotHttp)),
        (b"get / HTTP/1.1\r\n\r\n", Err(Error::NotHttp)),
        (b"\r\nGET / HTTP/1.1\r\n\r\n", Err(Error::NotHttp)),
        (b" GET / HTTP/1.1\r\n\r\n", Err(Error::NotHttp)),
        (b"ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\n\r\n", Err(Error::NotHttp)),
        (b"\x16\x03\x01\x02\x00", Err(Error::NotHttp)),
    ];
    for (bytes, want) in cases {
        assert_eq!(&parse(bytes), want, "{:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn detect_http1_every_prefix_is_incomplete() {
    let full = b"POST /v1/chat HTTP/1.1\r\nHost: api.example.test\r\nContent-Type: application/json\r\n\r\n";
    for end in 0..full.len() {
        assert_eq!(parse(&full[..end]), Err(Error::Incomplete), "cut at {end}");
    }
    assert_eq!(
        parse(full)
            .unwrap()
            .host
            .as_ref()
            .map(crate::host::Host::as_str),
        Some("api.example.test")
    );
}

#[test]
fn detect_http1_too_many_headers_is_malformed() {
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=100 {
        head.extend(format!("X-{i}: v\r\n").as_bytes());
    }
    head.extend(b"\r\n");
    assert_eq!(
        parse(&head),
        Err(Error::Malformed("more than 100 header lines"))
    );
}
