//! A Java trust store (`cacerts`) as a PKCS #12 file with no password: certificate bags in
//! the clear, each marked trusted for any purpose (the attribute Java reads), and no MAC: the
//! form of the JDK's own password-less `cacerts`, which Java reads with no password set.
//!
//! Written with a few DER helpers rather than a PKCS #12 crate: the crates at hand encrypt
//! every certificate bag, which Java skips when it has no password.

/// `1.2.840.113549.1.7.1`, PKCS #7 data.
const ID_DATA: &[u64] = &[1, 2, 840, 113_549, 1, 7, 1];
/// `1.2.840.113549.1.12.10.1.3`, a certificate bag.
const CERT_BAG: &[u64] = &[1, 2, 840, 113_549, 1, 12, 10, 1, 3];
/// `1.2.840.113549.1.9.22.1`, an X.509 certificate in a bag.
const X509_CERTIFICATE: &[u64] = &[1, 2, 840, 113_549, 1, 9, 22, 1];
/// `1.2.840.113549.1.9.20`, the entry's alias.
const FRIENDLY_NAME: &[u64] = &[1, 2, 840, 113_549, 1, 9, 20];
/// `2.16.840.1.113894.746875.1.1`, Oracle's "trusted for" attribute.
const ORACLE_TRUSTED_KEY_USAGE: &[u64] = &[2, 16, 840, 1, 113_894, 746_875, 1, 1];
/// `2.5.29.37.0`, any extended key usage.
const ANY_EXTENDED_KEY_USAGE: &[u64] = &[2, 5, 29, 37, 0];

/// The store holding `certs` (DER), each under its alias.
pub fn trust_store<'a>(certs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut bags = Vec::new();
    for (alias, der) in certs {
        bags.extend(cert_bag(alias, der));
    }
    let safe_contents = tlv(0x30, &bags);
    let authenticated_safe = tlv(0x30, &data(&safe_contents));
    let mut pfx = tlv(0x02, &[3]);
    pfx.extend(data(&authenticated_safe));
    tlv(0x30, &pfx)
}

/// A `ContentInfo` of type data around `content`.
fn data(content: &[u8]) -> Vec<u8> {
    let mut info = oid(ID_DATA);
    info.extend(tlv(0xa0, &tlv(0x04, content)));
    tlv(0x30, &info)
}

fn cert_bag(alias: &str, der: &[u8]) -> Vec<u8> {
    let mut cert = oid(X509_CERTIFICATE);
    cert.extend(tlv(0xa0, &tlv(0x04, der)));
    let name: Vec<u8> = alias.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let mut friendly = oid(FRIENDLY_NAME);
    friendly.extend(tlv(0x31, &tlv(0x1e, &name)));
    let mut trusted = oid(ORACLE_TRUSTED_KEY_USAGE);
    trusted.extend(tlv(0x31, &oid(ANY_EXTENDED_KEY_USAGE)));
    let mut attributes = tlv(0x30, &friendly);
    attributes.extend(tlv(0x30, &trusted));
    let mut bag = oid(CERT_BAG);
    bag.extend(tlv(0xa0, &tlv(0x30, &cert)));
    bag.extend(tlv(0x31, &attributes));
    tlv(0x30, &bag)
}

/// An OBJECT IDENTIFIER.
fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut push = |mut arc: u64| {
        let mut bytes = vec![(arc & 0x7f) as u8];
        arc >>= 7;
        while arc > 0 {
            bytes.push(0x80 | (arc & 0x7f) as u8);
            arc >>= 7;
        }
        bytes.reverse();
        body.extend(bytes);
    };
    push(arcs[0] * 40 + arcs[1]);
    for arc in &arcs[2..] {
        push(*arc);
    }
    tlv(0x06, &body)
}

/// A DER tag-length-value.
pub(crate) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_encode_as_der_does() {
        assert_eq!(
            oid(ID_DATA),
            [
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01
            ]
        );
        assert_eq!(
            oid(ANY_EXTENDED_KEY_USAGE),
            [0x06, 0x04, 0x55, 0x1d, 0x25, 0x00]
        );
    }

    /// keytool (the JDK's own reader) lists every certificate as a trusted entry, with no
    /// password.
    #[test]
    fn keytool_reads_every_certificate_as_trusted() {
        let Ok(probe) = std::process::Command::new("keytool").arg("-help").output() else {
            panic!("keytool (a JDK, on the test machines' image) is needed");
        };
        assert!(probe.status.success() || !probe.stderr.is_empty());
        let mut certs = Vec::new();
        for name in ["first", "second"] {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec![format!("{name}.test")]).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            certs.push((name, params.self_signed(&key).unwrap().der().to_vec()));
        }
        let store = trust_store(certs.iter().map(|(n, d)| (*n, d.as_slice())));
        let dir = std::env::temp_dir().join(format!("sluice-p12-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cacerts");
        std::fs::write(&path, store).unwrap();
        let out = std::process::Command::new("keytool")
            .args([
                "-list",
                "-storetype",
                "PKCS12",
                "-storepass",
                "",
                "-keystore",
            ])
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(listed.contains("contains 2 entries"), "{listed}");
        assert_eq!(listed.matches("trustedCertEntry").count(), 2, "{listed}");
        assert!(
            listed.contains("first,") && listed.contains("second,"),
            "{listed}"
        );
    }
}
