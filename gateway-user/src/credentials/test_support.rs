//! Credentials for the tests of this module.

use super::{Bound, CredentialSpec, Secret};

/// A credential toward `hosts`, allowed in any header, not in queries or bodies.
pub(crate) fn cred(name: &str, hosts: &[&str], value: &[u8]) -> Bound {
    Bound {
        spec: CredentialSpec {
            name: name.to_owned(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            headers: Vec::new(),
            query: false,
            body: false,
        },
        value: Secret::new(value.to_vec()),
    }
}

/// The same, limited to these headers.
pub(crate) fn in_headers(mut bound: Bound, headers: &[&str]) -> Bound {
    bound.spec.headers = headers.iter().map(|h| (*h).to_owned()).collect();
    bound
}

/// The same, also allowed in the query string.
pub(crate) fn in_query(mut bound: Bound) -> Bound {
    bound.spec.query = true;
    bound
}

/// The same, also allowed in bodies.
pub(crate) fn in_body(mut bound: Bound) -> Bound {
    bound.spec.body = true;
    bound
}
