//! Swapping placeholders for real values in request headers and query strings, only toward
//! each credential's own hosts. Pure: the request path calls it and carries out the result.
//!
//! Where placeholders are looked for, and what happens:
//! - header values: swapped when the credential is bound to the host and the header is
//!   allowed (`spec.headers` empty allows any);
//! - the query string: swapped (percent-encoded) only for credentials with `query: true`;
//!   `sluice_cred%3ANAME` counts too, since URL encoders escape the colon;
//! - the path: never swapped; any placeholder there is refused ([`Reason::InPath`]), because
//!   paths end up in logs, caches and redirects;
//! - bodies: see [`Injector::body`].
//!
//! Any placeholder that may not be swapped refuses the whole request, and nothing is modified:
//! every placeholder is checked before any is substituted.

use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use zeroize::Zeroizing;

use super::encode;
use super::misdirected::{Misdirected, Reason};
use super::placeholder::{self, Found, Hit};
use super::secret::Secret;
use super::spec::CredentialSpec;
use crate::host::Host;

/// A credential with its value opened, ready to be swapped in.
///
/// # Security
/// `Debug` shows the spec and `Secret(<redacted>)`; the value is zeroed on drop.
#[derive(Clone, Debug)]
pub struct Bound {
    /// Where the value may go.
    pub spec: CredentialSpec,
    /// The real value.
    pub value: Secret,
}

/// Swaps a session's placeholders for their values in outgoing requests.
///
/// Cheap to clone (the credentials are shared). Names are unique per session; if two
/// credentials share one, the first wins.
///
/// # Security
/// A placeholder is only swapped toward one of its credential's exact hosts (in [`Host`]'s
/// normal form, as session validation requires; no wildcards); everything else is a [`Misdirected`] error. Injected
/// header values are marked sensitive (never indexed by HPACK, `Debug` prints `Sensitive`).
/// The modified request carries real values: never log it.
#[derive(Clone, Debug)]
pub struct Injector {
    bounds: Arc<[Bound]>,
    transport: Transport,
}

/// How a request travels to its upstream, which decides whether any value may go into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TLS whose certificate the gateway verifies for the request's host (SNI = Host).
    VerifiedTls,
    /// Plain HTTP: no SNI, no certificate, so the sandbox alone chose where it goes. No value
    /// is ever injected; every placeholder is refused ([`Reason::PlainHttp`]).
    PlainHttp,
}

/// Where a placeholder was found, for [`Injector::decide`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Place<'a> {
    /// A header value, under this header name.
    Header(&'a HeaderName),
    /// The query string.
    Query,
    /// A JSON or form body.
    Body,
    /// A body of another content type (named here).
    OtherBody(&'a str),
}

impl Injector {
    /// An injector for a session's opened credentials, for a request travelling over
    /// `transport`.
    ///
    /// # Security
    /// With [`Transport::PlainHttp`] nothing is ever swapped: a plain HTTP request goes to an
    /// address the sandbox chose, with a Host header it wrote, and nothing verifies who
    /// receives it. The caller should not even open values for such a request.
    pub fn new(bounds: Vec<Bound>, transport: Transport) -> Injector {
        Injector {
            bounds: bounds.into(),
            transport,
        }
    }

    /// Swaps every placeholder in every header value, in place; returns the names injected
    /// (each once, in order of first appearance).
    ///
    /// `host` is the destination.
    ///
    /// # Errors
    /// [`Misdirected`] for the first placeholder that may not be swapped (unknown name, other
    /// host, header not allowed, value not valid in a header); `headers` is then untouched.
    pub fn headers(
        &self,
        host: &Host,
        headers: &mut HeaderMap,
    ) -> Result<Vec<String>, Misdirected> {
        let mut injected = Vec::new();
        let mut replaced = Vec::with_capacity(headers.len());
        for (name, value) in headers.iter() {
            replaced.push(self.header_value(host, name, value, &mut injected)?);
        }
        if !injected.is_empty() {
            for ((_, slot), new) in headers.iter_mut().zip(replaced) {
                if let Some(new) = new {
                    *slot = new;
                }
            }
        }
        Ok(injected)
    }

    /// Swaps placeholders in the query string of `uri`; returns the new URI with the names
    /// injected (each once), or `Ok(None)` when there was nothing to swap.
    ///
    /// Values are percent-encoded (everything but `A-Za-z0-9-._~`). Only credentials with
    /// `query: true` are swapped here. A placeholder in the path is always refused.
    ///
    /// # Errors
    /// [`Misdirected`] for the first placeholder that may not be swapped, including any in
    /// the path ([`Reason::InPath`]).
    pub fn query(&self, host: &Host, uri: &Uri) -> Result<Option<(Uri, Vec<String>)>, Misdirected> {
        let path = uri.path().as_bytes();
        if let Some(Hit::Complete(found)) = placeholder::next(path, 0, true, true) {
            return Err(refuse(host, &found, Reason::InPath));
        }
        let Some(query) = uri.query() else {
            return Ok(None);
        };
        let query = query.as_bytes();
        let mut injected = Vec::new();
        let mut out = Zeroizing::new(Vec::with_capacity(path.len() + 1 + query.len()));
        out.extend_from_slice(path);
        out.push(b'?');
        let mut pos = 0;
        while let Some(Hit::Complete(found)) = placeholder::next(query, pos, true, true) {
            let bound = self.decide(host, &found, Place::Query)?;
            out.extend_from_slice(query.get(pos..found.start).unwrap_or_default());
            encode::percent(bound.value.expose(), &mut out);
            note(&mut injected, &bound.spec.name);
            pos = found.end;
        }
        let Some(first) = injected.first() else {
            return Ok(None);
        };
        out.extend_from_slice(query.get(pos..).unwrap_or_default());
        let unencodable = || Misdirected {
            name: first.clone(),
            host: host.to_string(),
            reason: Reason::Unencodable("query string"),
        };
        let path_and_query = PathAndQuery::try_from(out.as_slice()).map_err(|_| unencodable())?;
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(path_and_query);
        let uri = Uri::from_parts(parts).map_err(|_| unencodable())?;
        Ok(Some((uri, injected)))
    }

    /// Whether the placeholder `found` may be swapped at `place` toward `host`, and with
    /// which credential. Checked in order: name length, known name, host, then the place.
    pub(crate) fn decide(
        &self,
        host: &Host,
        found: &Found<'_>,
        place: Place<'_>,
    ) -> Result<&Bound, Misdirected> {
        if found.too_long {
            return Err(refuse(host, found, Reason::NameTooLong));
        }
        let Some(bound) = self
            .bounds
            .iter()
            .find(|b| b.spec.name.as_bytes() == found.name)
        else {
            return Err(refuse(host, found, Reason::UnknownName));
        };
        let spec = &bound.spec;
        if !spec.hosts.iter().any(|h| host == h.as_str()) {
            return Err(refuse(host, found, Reason::WrongHost));
        }
        if self.transport == Transport::PlainHttp {
            let reason = Reason::PlainHttp {
                name: spec.name.clone(),
                hosts: spec.hosts.join(", "),
            };
            return Err(refuse(host, found, reason));
        }
        let denied = match place {
            Place::Header(name) => {
                let allowed = spec.headers.is_empty()
                    || spec
                        .headers
                        .iter()
                        .any(|h| h.eq_ignore_ascii_case(name.as_str()));
                (!allowed).then(|| Reason::HeaderNotAllowed(name.as_str().to_owned()))
            }
            Place::Query => (!spec.query).then_some(Reason::QueryNotAllowed),
            Place::Body => (!spec.body).then_some(Reason::BodyNotAllowed),
            Place::OtherBody(content_type) => Some(Reason::BodyType(content_type.to_owned())),
        };
        match denied {
            Some(reason) => Err(refuse(host, found, reason)),
            None => Ok(bound),
        }
    }

    /// The new value of one header, or `None` when it holds no placeholder.
    fn header_value(
        &self,
        host: &Host,
        name: &HeaderName,
        value: &HeaderValue,
        injected: &mut Vec<String>,
    ) -> Result<Option<HeaderValue>, Misdirected> {
        let bytes = value.as_bytes();
        let mut out = Zeroizing::new(Vec::new());
        let mut pos = 0;
        while let Some(Hit::Complete(found)) = placeholder::next(bytes, pos, false, true) {
            let bound = self.decide(host, &found, Place::Header(name))?;
            let secret = bound.value.expose();
            if !secret
                .iter()
                .all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f))
            {
                return Err(refuse(host, &found, Reason::Unencodable("header value")));
            }
            out.extend_from_slice(bytes.get(pos..found.start).unwrap_or_default());
            out.extend_from_slice(secret);
            note(injected, &bound.spec.name);
            pos = found.end;
        }
        if pos == 0 {
            return Ok(None);
        }
        out.extend_from_slice(bytes.get(pos..).unwrap_or_default());
        let mut new = HeaderValue::from_bytes(&out).map_err(|_| Misdirected {
            name: injected.last().cloned().unwrap_or_default(),
            host: host.to_string(),
            reason: Reason::Unencodable("header value"),
        })?;
        new.set_sensitive(true);
        Ok(Some(new))
    }
}

/// The refusal of `found` toward `host`.
pub(crate) fn refuse(host: &Host, found: &Found<'_>, reason: Reason) -> Misdirected {
    Misdirected {
        name: found.name_string(),
        host: host.to_string(),
        reason,
    }
}

/// Adds `name` to the list of injected names unless it is there already.
pub(crate) fn note(injected: &mut Vec<String>, name: &str) {
    if !injected.iter().any(|n| n == name) {
        injected.push(name.to_owned());
    }
}

#[cfg(test)]
#[path = "inject_tests.rs"]
mod tests;
