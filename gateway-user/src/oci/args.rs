//! The command line an OCI runtime (runc, crun) is given, as far as the wrapper needs it:
//! the global options (passed again to `state` and `delete`), the command, and for `create`
//! the bundle directory and the container id.
//!
//! runc and crun share the shape `RUNTIME [GLOBAL…] COMMAND [OPTION…] [ID]`; the global
//! options that take a value are listed below (both `--opt value` and `--opt=value`).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;

/// Global options (runc's and crun's) followed by a value.
const GLOBAL_VALUES: &[&str] = &[
    "--root",
    "--log",
    "--log-format",
    "--log-level",
    "--criu",
    "--rootless",
    "--cgroup-manager",
];

/// `create` options followed by a value.
const CREATE_VALUES: &[&str] = &[
    "--bundle",
    "-b",
    "--pid-file",
    "--console-socket",
    "--preserve-fds",
    "--config",
    "-f",
];

/// A parsed runtime command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeArgs {
    /// The global options, as given.
    pub globals: Vec<OsString>,
    /// The command (`create`, `start`, `delete`…), if any.
    pub command: Option<String>,
    /// The arguments after the command.
    pub rest: Vec<OsString>,
}

impl RuntimeArgs {
    /// Splits `args` (without the program name).
    pub fn parse(args: &[OsString]) -> RuntimeArgs {
        let mut parsed = RuntimeArgs::default();
        let mut i = 0;
        while let Some(arg) = args.get(i) {
            let text = arg.to_string_lossy();
            if !text.starts_with('-') {
                parsed.command = Some(text.into_owned());
                parsed.rest = args[i + 1..].to_vec();
                break;
            }
            parsed.globals.push(arg.clone());
            // runc also takes `-root X` for `--root X`.
            if GLOBAL_VALUES.contains(&long_form(&text).as_str())
                && let Some(value) = args.get(i + 1)
            {
                parsed.globals.push(value.clone());
                i += 1;
            }
            i += 1;
        }
        parsed
    }

    /// The value of the global option `name` (`--log`…), if given.
    pub fn global(&self, name: &str) -> Option<&OsStr> {
        option_value(&self.globals, name)
    }

    /// The value of the command's option `name` (`--config`…), if given.
    pub fn option(&self, name: &str) -> Option<&OsStr> {
        option_value(&self.rest, name)
    }

    /// For `create` (and `run`): the bundle directory (`--bundle`, `-b`, else the current
    /// directory) and the container id (the last argument that is not an option or an
    /// option's value).
    pub fn create_target(&self) -> Option<(PathBuf, String)> {
        let bundle = option_value(&self.rest, "--bundle")
            .or_else(|| option_value(&self.rest, "-b"))
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        let mut id = None;
        let mut i = 0;
        while let Some(arg) = self.rest.get(i) {
            let text = arg.to_string_lossy();
            if text.starts_with('-') {
                if CREATE_VALUES.contains(&text.as_ref())
                    || CREATE_VALUES.contains(&long_form(&text).as_str())
                {
                    i += 1;
                }
            } else {
                id = Some(text.into_owned());
            }
            i += 1;
        }
        Some((bundle, id?))
    }

    /// For `delete` (and other commands naming one container): the last argument that is
    /// not an option.
    pub fn container_id(&self) -> Option<String> {
        self.rest
            .iter()
            .map(|a| a.to_string_lossy())
            .rfind(|a| !a.starts_with('-'))
            .map(|a| a.into_owned())
    }
}

/// `--name` for `-name` or `--name` (runc's flag library takes either); single letters stay.
fn long_form(text: &str) -> String {
    let bare = text.trim_start_matches('-');
    if bare.len() > 1 {
        format!("--{bare}")
    } else {
        text.to_owned()
    }
}

/// The value of `name` in `args`: `name value` or `name=value` (`-name` for `--name` too).
fn option_value<'a>(args: &'a [OsString], name: &str) -> Option<&'a OsStr> {
    let single = name
        .strip_prefix('-')
        .filter(|n| n.starts_with('-') && n.len() > 2);
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let bytes = arg.as_bytes();
        if single.is_some_and(|s| bytes == s.as_bytes()) {
            return iter.next().map(OsString::as_os_str);
        }
        if bytes == name.as_bytes() {
            return iter.next().map(OsString::as_os_str);
        }
        if let Some(value) = bytes
            .strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
        {
            return Some(OsStr::from_bytes(value));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn podman_and_containerd_command_lines_split_into_globals_command_and_target() {
        // podman (runc): no globals.
        let podman = RuntimeArgs::parse(&args(&[
            "create",
            "--bundle",
            "/var/lib/containers/x/userdata",
            "--pid-file",
            "/run/x/pidfile",
            "abc123",
        ]));
        assert_eq!(podman.command.as_deref(), Some("create"));
        assert!(podman.globals.is_empty());
        assert_eq!(
            podman.create_target(),
            Some((
                PathBuf::from("/var/lib/containers/x/userdata"),
                "abc123".into()
            ))
        );
        // containerd's shim: globals with values, `--bundle=`-style and a console socket.
        let shim = RuntimeArgs::parse(&args(&[
            "--root",
            "/run/containerd/runc/k8s.io",
            "--log",
            "/run/containerd/x/log.json",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "create",
            "--bundle=/run/containerd/x",
            "--console-socket",
            "/tmp/pty.sock",
            "--no-pivot",
            "ctr-1",
        ]));
        assert_eq!(shim.command.as_deref(), Some("create"));
        assert_eq!(shim.globals.len(), 7);
        assert_eq!(
            shim.global("--log"),
            Some(OsStr::new("/run/containerd/x/log.json"))
        );
        assert_eq!(
            shim.create_target(),
            Some((PathBuf::from("/run/containerd/x"), "ctr-1".into()))
        );
        // runc's single-dash spelling of its long options.
        let single = RuntimeArgs::parse(&args(&["-root", "/r", "create", "-bundle", "/b", "x"]));
        assert_eq!(single.command.as_deref(), Some("create"));
        assert_eq!(single.global("--root"), Some(OsStr::new("/r")));
        assert_eq!(
            single.create_target(),
            Some((PathBuf::from("/b"), "x".into()))
        );
        let delete = RuntimeArgs::parse(&args(&["--root", "/r", "delete", "--force", "ctr-1"]));
        assert_eq!(delete.command.as_deref(), Some("delete"));
        assert_eq!(delete.container_id().as_deref(), Some("ctr-1"));
    }

    #[test]
    fn a_create_without_an_id_or_a_bundle_is_read_as_such() {
        let no_id = RuntimeArgs::parse(&args(&["create", "--bundle", "/b"]));
        assert_eq!(no_id.create_target(), None);
        let here = RuntimeArgs::parse(&args(&["create", "id"]));
        assert_eq!(
            here.create_target(),
            Some((PathBuf::from("."), "id".into()))
        );
        let version = RuntimeArgs::parse(&args(&["--version"]));
        assert_eq!(version.command, None);
    }
}
