//! A ClientHello builder for tests, so each case states only what it changes.

/// A ClientHello under construction; `Hello::tls13()` is a plausible TLS 1.3 hello.
#[derive(Debug, Clone)]
pub struct Hello {
    pub legacy_version: u16,
    pub session_id: Vec<u8>,
    pub suites: Vec<u8>,
    pub compression: Vec<u8>,
    /// `None` sends no extensions block at all (legal in TLS 1.2).
    pub extensions: Option<Vec<(u16, Vec<u8>)>>,
    /// Raw bytes appended to the body, after the extensions.
    pub trailer: Vec<u8>,
    pub handshake_type: u8,
}

impl Hello {
    pub fn tls13() -> Self {
        Self {
            legacy_version: 0x0303,
            session_id: vec![7; 32],
            suites: vec![0x13, 0x01, 0x13, 0x02],
            compression: vec![0],
            extensions: Some(vec![(43, u8v(&[0x03, 0x04, 0x03, 0x03]))]),
            trailer: Vec::new(),
            handshake_type: 1,
        }
    }

    /// Adds an extension with raw data.
    pub fn ext(mut self, kind: u16, data: Vec<u8>) -> Self {
        self.extensions
            .get_or_insert_with(Vec::new)
            .push((kind, data));
        self
    }

    /// Adds a `server_name` extension with one host_name.
    pub fn sni(self, name: &str) -> Self {
        self.sni_entries(&[(0, name.as_bytes())])
    }

    /// Adds a `server_name` extension with the given (name_type, name) entries.
    pub fn sni_entries(self, entries: &[(u8, &[u8])]) -> Self {
        let list: Vec<u8> = entries
            .iter()
            .flat_map(|(t, n)| [vec![*t], u16v(n)].concat())
            .collect();
        self.ext(0, u16v(&list))
    }

    /// Adds an ALPN extension.
    pub fn alpn(self, protocols: &[&[u8]]) -> Self {
        let list: Vec<u8> = protocols.iter().flat_map(|p| u8v(p)).collect();
        self.ext(16, u16v(&list))
    }

    /// Adds a padding extension of `len` zero bytes.
    pub fn padding(self, len: usize) -> Self {
        self.ext(21, vec![0; len])
    }

    pub fn body(&self) -> Vec<u8> {
        let mut body = self.legacy_version.to_be_bytes().to_vec();
        body.extend([0x42; 32]);
        body.extend(u8v(&self.session_id));
        body.extend(u16v(&self.suites));
        body.extend(u8v(&self.compression));
        if let Some(extensions) = &self.extensions {
            let block: Vec<u8> = extensions
                .iter()
                .flat_map(|(kind, data)| [kind.to_be_bytes().to_vec(), u16v(data)].concat())
                .collect();
            body.extend(u16v(&block));
        }
        body.extend(&self.trailer);
        body
    }

    /// The handshake message: type, 24-bit length, body.
    pub fn message(&self) -> Vec<u8> {
        let body = self.body();
        let len = u32::try_from(body.len()).unwrap().to_be_bytes();
        [vec![self.handshake_type], len[1..].to_vec(), body].concat()
    }

    /// The message in one handshake record.
    pub fn record(&self) -> Vec<u8> {
        records(&self.message(), 1 << 14)
    }

    /// The message split into handshake records of at most `fragment` bytes.
    pub fn records(&self, fragment: usize) -> Vec<u8> {
        records(&self.message(), fragment)
    }
}

/// Wraps `payload` in handshake records (type 22, version 3.1) of at most `fragment` bytes.
pub fn records(payload: &[u8], fragment: usize) -> Vec<u8> {
    payload
        .chunks(fragment)
        .flat_map(|chunk| record(22, 0x0301, chunk))
        .collect()
}

/// One TLS record.
pub fn record(content_type: u8, version: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap();
    [
        vec![content_type],
        version.to_be_bytes().to_vec(),
        len.to_be_bytes().to_vec(),
        payload.to_vec(),
    ]
    .concat()
}

/// `data` with a one-byte length prefix.
pub fn u8v(data: &[u8]) -> Vec<u8> {
    [vec![u8::try_from(data.len()).unwrap()], data.to_vec()].concat()
}

/// `data` with a two-byte length prefix.
pub fn u16v(data: &[u8]) -> Vec<u8> {
    [
        u16::try_from(data.len()).unwrap().to_be_bytes().to_vec(),
        data.to_vec(),
    ]
    .concat()
}
