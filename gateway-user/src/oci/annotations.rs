//! What a container's `sluice.dev/*` annotations ask of Sluice.
//!
//! - `sluice.dev/session: ses_…`: capture the container under that session;
//! - `sluice.dev/capture: "true"`: capture it under the node's policy (no session);
//!   `"false"`: leave it alone (the same as no annotation);
//! - `sluice.dev/upstream-proxy: ID|none`: its upstream proxy, overriding its session's.
//!
//! Any other `sluice.dev/` key, or a value these do not accept, is an error: the container
//! does not start (a typo must not leave a workload uncaptured). Kubernetes' pod sandbox
//! (the pause container, `io.kubernetes.cri.container-type: sandbox`) only holds the pod's
//! namespaces and runs nothing: it is never captured, its workload containers are.

use std::collections::BTreeMap;

/// The annotation prefix Sluice owns.
pub const PREFIX: &str = "sluice.dev/";
/// Capture under a session.
pub const SESSION: &str = "sluice.dev/session";
/// Capture under the node's policy (`true`), or not (`false`).
pub const CAPTURE: &str = "sluice.dev/capture";
/// The container's upstream proxy.
pub const UPSTREAM_PROXY: &str = "sluice.dev/upstream-proxy";
/// containerd's and CRI-O's marker of a pod's sandbox (pause) container.
const CONTAINER_TYPE: &[&str] = &[
    "io.kubernetes.cri.container-type",
    "io.kubernetes.cri-o.ContainerType",
];

/// What to do with a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capture {
    /// Leave it alone.
    No,
    /// Enroll it before it starts.
    Yes {
        /// Its session (`None`: the node's policy).
        session: Option<String>,
        /// Its upstream proxy override.
        upstream_proxy: Option<String>,
    },
}

/// Why the annotations cannot be followed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    /// A `sluice.dev/` key Sluice does not know.
    #[error(
        "unknown annotation {0:?}: Sluice reads {SESSION}, {CAPTURE} and {UPSTREAM_PROXY} (is it a typo?)"
    )]
    Unknown(String),
    /// A value the key does not accept.
    #[error("annotation {key}: {problem}")]
    Value {
        /// The key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Reads `annotations` (the bundle's `config.json` `annotations` object).
pub fn capture(annotations: &BTreeMap<String, String>) -> Result<Capture, AnnotationError> {
    if let Some(unknown) = annotations.keys().find(|k| {
        k.starts_with(PREFIX) && ![SESSION, CAPTURE, UPSTREAM_PROXY].contains(&k.as_str())
    }) {
        return Err(AnnotationError::Unknown(unknown.clone()));
    }
    let bad = |key, problem: &str| AnnotationError::Value {
        key,
        problem: problem.to_owned(),
    };
    let capture = match annotations.get(CAPTURE).map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(bad(CAPTURE, "must be \"true\" or \"false\"")),
    };
    let session = match annotations.get(SESSION) {
        None => None,
        Some(id) if valid_token(id) => Some(id.clone()),
        Some(_) => {
            return Err(bad(
                SESSION,
                "not a session id (ses_… from `sluice session create`)",
            ));
        }
    };
    let upstream_proxy = match annotations.get(UPSTREAM_PROXY) {
        None => None,
        Some(id) if valid_token(id) => Some(id.clone()),
        Some(_) => return Err(bad(UPSTREAM_PROXY, "not a proxy id (or none)")),
    };
    let wanted = match (capture, &session) {
        (Some(false), Some(_)) => {
            return Err(bad(CAPTURE, "\"false\" contradicts sluice.dev/session"));
        }
        (Some(false), None) if upstream_proxy.is_some() => {
            return Err(bad(
                UPSTREAM_PROXY,
                "set on a container that is not captured",
            ));
        }
        (Some(true), _) | (_, Some(_)) => true,
        (None, None) if upstream_proxy.is_some() => {
            return Err(bad(
                UPSTREAM_PROXY,
                "set on a container that is not captured (add sluice.dev/session or sluice.dev/capture: \"true\")",
            ));
        }
        _ => false,
    };
    let pod_sandbox = CONTAINER_TYPE
        .iter()
        .any(|key| annotations.get(*key).is_some_and(|t| t == "sandbox"));
    Ok(if wanted && !pod_sandbox {
        Capture::Yes {
            session,
            upstream_proxy,
        }
    } else {
        Capture::No
    })
}

/// A session or proxy id: 1–128 of `[A-Za-z0-9_.-]`.
fn valid_token(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<Capture, AnnotationError> {
        capture(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn a_session_or_capture_true_enrolls_and_nothing_leaves_the_container_alone() {
        assert_eq!(read(&[]).unwrap(), Capture::No);
        assert_eq!(
            read(&[("io.podman.annotations.x", "1")]).unwrap(),
            Capture::No
        );
        assert_eq!(
            read(&[(SESSION, "ses_abc")]).unwrap(),
            Capture::Yes {
                session: Some("ses_abc".into()),
                upstream_proxy: None
            }
        );
        assert_eq!(
            read(&[(CAPTURE, "true"), (UPSTREAM_PROXY, "none")]).unwrap(),
            Capture::Yes {
                session: None,
                upstream_proxy: Some("none".into())
            }
        );
        assert_eq!(read(&[(CAPTURE, "false")]).unwrap(), Capture::No);
    }

    #[test]
    fn typos_and_contradictions_are_refused_not_ignored() {
        assert_eq!(
            read(&[("sluice.dev/sesion", "ses_abc")]),
            Err(AnnotationError::Unknown("sluice.dev/sesion".into()))
        );
        assert!(read(&[(CAPTURE, "yes")]).is_err());
        assert!(read(&[(CAPTURE, "false"), (SESSION, "ses_a")]).is_err());
        assert!(
            read(&[(UPSTREAM_PROXY, "corp")]).is_err(),
            "a proxy alone captures nothing"
        );
        assert!(read(&[(SESSION, "ses a; rm")]).is_err());
        assert!(read(&[(SESSION, "")]).is_err());
    }

    #[test]
    fn a_pods_sandbox_container_is_never_captured_its_workload_is() {
        let pause = read(&[
            (SESSION, "ses_abc"),
            ("io.kubernetes.cri.container-type", "sandbox"),
        ]);
        assert_eq!(pause.unwrap(), Capture::No);
        let workload = read(&[
            (SESSION, "ses_abc"),
            ("io.kubernetes.cri.container-type", "container"),
        ]);
        assert!(matches!(workload.unwrap(), Capture::Yes { .. }));
    }
}
