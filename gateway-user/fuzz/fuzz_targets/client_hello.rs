//! Feeds arbitrary bytes to the ClientHello parser and to `classify`: neither may
//! panic, and a parsed server name must always be a normalized DNS name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::detect::{classify, client_hello};

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = client_hello::parse(data) {
        if let Some(name) = &hello.server_name {
            assert!(!name.is_empty() && name.len() <= 253, "{name:?}");
            assert!(!name.ends_with('.') && !name.contains(".."), "{name:?}");
            assert!(
                name.bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.')),
                "{name:?}"
            );
        }
        assert!(hello.alpn.iter().all(|p| !p.is_empty()));
        // Cutting the last byte never yields a different name.
        if let Some((_, prefix)) = data.split_last() {
            match client_hello::parse(prefix) {
                Ok(shorter) => assert_eq!(shorter.server_name, hello.server_name),
                Err(client_hello::Error::Incomplete) => {}
                Err(e) => panic!("prefix of a valid hello gave {e:?}"),
            }
        }
    }
    let _ = classify(data);
});
