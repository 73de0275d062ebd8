//! Who a sandboxed workload is on the node: the user namespace mapping `sluice exec` gives it.
//!
//! A workload never runs as the node's root. By default it is root inside a user namespace of
//! its own whose 65,536 ids map to an unprivileged range on the node, one range per sandbox
//! (so two sandboxes never share an id). With `--user`, or when `sluice exec` runs through
//! `sudo`, it runs as that user instead (the same id inside and out), so the files it writes
//! belong to that user.
//!
//! # Security
//! Whatever id the workload believes it has, the node sees an id that owns nothing of the
//! node's: it gets no capability over the node's files, processes, sysctls or namespaces.

use std::path::PathBuf;

/// First node id of the ranges given to sandboxes (`0x5000_0000`).
pub const RANGE_BASE: u32 = 0x5000_0000;
/// Ids per sandbox range.
pub const RANGE_SIZE: u32 = 65_536;
/// Number of distinct ranges; sandbox ids wrap around after this many.
pub const RANGES: u64 = 8_192;

/// Why an identity could not be chosen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// `--user` did not name a user, or named root.
    #[error("--user {0:?}: {1}")]
    BadUser(String, &'static str),
}

/// The id mapping of one sandbox's user namespace, and the ids the workload runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// First id inside the namespace.
    pub inside: u32,
    /// First node id it maps to.
    pub outside: u32,
    /// Group mapped like `inside`/`outside`.
    pub inside_gid: u32,
    /// Node group `inside_gid` maps to.
    pub outside_gid: u32,
    /// How many consecutive ids are mapped.
    pub count: u32,
    /// The workload's home directory when it is a real user of the node (else a private one).
    pub home: Option<PathBuf>,
}

impl Identity {
    /// Root inside, mapped to the unprivileged range of sandbox `sandbox_id`.
    pub fn mapped_root(sandbox_id: u64) -> Identity {
        let slot = u32::try_from(sandbox_id % RANGES).unwrap_or(0);
        let outside = RANGE_BASE + slot * RANGE_SIZE;
        Identity {
            inside: 0,
            outside,
            inside_gid: 0,
            outside_gid: outside,
            count: RANGE_SIZE,
            home: None,
        }
    }

    /// The node user `uid`/`gid`, the same ids inside and out.
    pub fn user(uid: u32, gid: u32, home: Option<PathBuf>) -> Identity {
        Identity {
            inside: uid,
            outside: uid,
            inside_gid: gid,
            outside_gid: gid,
            count: 1,
            home,
        }
    }

    /// The identity for `sluice exec`: `--user NAME|UID[:GROUP|GID]` if given, else the user
    /// who ran `sudo` (`SUDO_UID`/`SUDO_GID`), else root mapped to the sandbox's range.
    pub fn for_exec(
        user: Option<&str>,
        sudo: Option<(&str, &str)>,
        sandbox_id: u64,
    ) -> Result<Identity, IdentityError> {
        if let Some(spec) = user {
            return parse_user(spec);
        }
        if let Some((uid, gid)) = sudo
            && let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>())
            && uid != 0
        {
            return Ok(Identity::user(uid, gid, home_of(uid)));
        }
        Ok(Identity::mapped_root(sandbox_id))
    }

    /// The `uid_map` line: `inside outside count`.
    pub fn uid_map(&self) -> String {
        format!("{} {} {}\n", self.inside, self.outside, self.count)
    }

    /// The `gid_map` line.
    pub fn gid_map(&self) -> String {
        format!("{} {} {}\n", self.inside_gid, self.outside_gid, self.count)
    }

    /// The form `internal-enter --identity` takes: `inside:outside:gid_in:gid_out:count`.
    pub fn to_arg(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.inside, self.outside, self.inside_gid, self.outside_gid, self.count
        )
    }

    /// Parses [`Identity::to_arg`]'s form (the home is passed separately).
    pub fn from_arg(text: &str) -> Option<Identity> {
        let parts: Vec<u32> = text
            .split(':')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [inside, outside, inside_gid, outside_gid, count] = parts[..] else {
            return None;
        };
        // Node root is never mapped in: the workload must own nothing of the node's.
        let maps_root = |first: u32| first == 0 || first.checked_add(count).is_none();
        if count == 0 || maps_root(outside) || maps_root(outside_gid) {
            return None;
        }
        Some(Identity {
            inside,
            outside,
            inside_gid,
            outside_gid,
            count,
            home: None,
        })
    }
}

/// `NAME|UID[:GROUP|GID]`, resolved against the node's user database; root is refused.
fn parse_user(spec: &str) -> Result<Identity, IdentityError> {
    use nix::unistd::{Group, Uid, User};
    let bad = |why| IdentityError::BadUser(spec.to_owned(), why);
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)).ok().flatten(),
        Err(_) => User::from_name(user).ok().flatten(),
    };
    let uid = match (user.parse::<u32>(), &entry) {
        (Ok(uid), _) => uid,
        (Err(_), Some(e)) => e.uid.as_raw(),
        (Err(_), None) => return Err(bad("no such user on this node")),
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => Group::from_name(g)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
                .ok_or_else(|| bad("no such group on this node"))?,
        },
        None => entry.as_ref().map_or(uid, |e| e.gid.as_raw()),
    };
    if uid == 0 || gid == 0 {
        return Err(bad(
            "a sandbox never runs as the node's root; name an unprivileged user, or leave --user out (root inside its own user namespace)",
        ));
    }
    Ok(Identity::user(uid, gid, entry.map(|e| e.dir)))
}

fn home_of(uid: u32) -> Option<PathBuf> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandboxes_get_disjoint_unprivileged_ranges() {
        let a = Identity::mapped_root(1);
        let b = Identity::mapped_root(2);
        assert_eq!(a.inside, 0);
        assert!(a.outside >= RANGE_BASE && a.outside + a.count <= b.outside);
        assert_eq!(a.uid_map(), format!("0 {} 65536\n", a.outside));
        let last = Identity::mapped_root(RANGES - 1);
        assert!(last.outside.checked_add(last.count).is_some());
    }

    #[test]
    fn the_argument_round_trips_and_never_maps_node_root() {
        let id = Identity::mapped_root(7);
        assert_eq!(Identity::from_arg(&id.to_arg()), Some(id));
        for bad in [
            "0:0:0:0:1",
            "0:5:0:0:1",
            "1:2:3",
            "0:1000:0:1000:0",
            "x:1:1:1:1",
        ] {
            assert_eq!(Identity::from_arg(bad), None, "{bad}");
        }
        let overflow = format!("0:{}:0:{}:2", u32::MAX, u32::MAX);
        assert_eq!(Identity::from_arg(&overflow), None);
    }

    #[test]
    fn user_choice_order() {
        let user = Identity::for_exec(Some("1000:1000"), Some(("2000", "2000")), 3).unwrap();
        assert_eq!((user.inside, user.outside, user.count), (1000, 1000, 1));
        let sudo = Identity::for_exec(None, Some(("2000", "2001")), 3).unwrap();
        assert_eq!((sudo.outside, sudo.outside_gid), (2000, 2001));
        let root_sudo = Identity::for_exec(None, Some(("0", "0")), 3).unwrap();
        assert_eq!(root_sudo, Identity::mapped_root(3));
        assert_eq!(
            Identity::for_exec(None, None, 3).unwrap(),
            Identity::mapped_root(3)
        );
    }

    #[test]
    fn root_and_unknown_users_are_refused() {
        for spec in [
            "root",
            "0",
            "1000:0",
            "no-such-user-here",
            "1000:no-such-group",
        ] {
            let err = Identity::for_exec(Some(spec), None, 1).unwrap_err();
            assert!(err.to_string().contains(spec), "{err}");
        }
    }
}
