//! The one error of injection: a placeholder that may not be swapped where it was found.

/// A placeholder the sandbox sent where its credential may not go; the caller refuses the
/// whole request (403) and audits it.
///
/// # Security
/// Names the credential and the destination host, never a value: the name comes from the
/// sandbox's own placeholder, and no field is ever filled from a [`super::Secret`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "credentials: the sandbox sent placeholder `sluice_cred:{name}` toward {host}; refused: {reason}"
)]
pub struct Misdirected {
    /// The name in the placeholder (at most 64 characters).
    pub name: String,
    /// The destination host the request was going to.
    pub host: String,
    /// Why it may not be swapped there.
    pub reason: Reason,
}

/// Why a placeholder was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The session has no credential by that name.
    #[error("the session has no credential by that name")]
    UnknownName,
    /// The credential is not bound to the destination host.
    #[error(
        "the credential is not bound to this host (add it to the credential's `hosts` if intended)"
    )]
    WrongHost,
    /// The header is not among the credential's `headers`.
    #[error("header `{0}` is not among the credential's `headers`")]
    HeaderNotAllowed(String),
    /// The credential is not enabled for the query string.
    #[error("the credential is not enabled for query strings (set `query: true`)")]
    QueryNotAllowed,
    /// The credential is not enabled for bodies.
    #[error("the credential is not enabled for bodies (set `body: true`)")]
    BodyNotAllowed,
    /// Placeholders are never swapped in the URL path.
    #[error("placeholders are never swapped in the URL path (send it in a header instead)")]
    InPath,
    /// The body's content type is neither JSON nor a form, so nothing in it is swapped.
    #[error("a body of type `{0}` is never rewritten (only JSON and form bodies are)")]
    BodyType(String),
    /// The name run is longer than 64 characters.
    #[error("the name is longer than 64 characters")]
    NameTooLong,
    /// The request would travel as plain HTTP: a real value only ever goes over TLS whose
    /// certificate the gateway verified for one of the credential's hosts.
    #[error(
        "credential {name} is only sent over HTTPS to {hosts}; this request is plain HTTP, so nothing was sent (use https://)"
    )]
    PlainHttp {
        /// The credential's name.
        name: String,
        /// The credential's hosts, comma-separated.
        hosts: String,
    },
    /// The value cannot be written there (control bytes in a header, not UTF-8 for JSON).
    #[error("the credential's value cannot be written into a {0} (fix the stored value)")]
    Unencodable(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_credential_and_host() {
        let err = Misdirected {
            name: "OPENAI".into(),
            host: "evil.example".into(),
            reason: Reason::WrongHost,
        };
        let text = err.to_string();
        assert!(text.contains("sluice_cred:OPENAI"), "{text}");
        assert!(text.contains("evil.example"), "{text}");
        assert!(text.contains("not bound to this host"), "{text}");
    }
}
