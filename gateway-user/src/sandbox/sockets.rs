//! Network sockets a workload opened before it was enrolled: those escape capture (a
//! socket keeps the cgroup it was created in), so enrolling a running workload that holds
//! any is refused unless the operator accepts it.

use std::collections::HashSet;
use std::path::Path;

/// A process holding network sockets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Its pid.
    pub pid: u32,
    /// How many TCP, UDP or raw sockets it holds.
    pub sockets: usize,
}

/// The processes in `cgroup` (and below it) that hold TCP, UDP or raw sockets (unix
/// sockets do not reach the network and are not counted).
pub fn holders(cgroup: &Path) -> std::io::Result<Vec<Holder>> {
    let mut pids = Vec::new();
    collect_pids(cgroup, &mut pids)?;
    let mut found = Vec::new();
    for pid in pids {
        let fds = socket_inodes(pid);
        if fds.is_empty() {
            continue;
        }
        // Its own namespace's sockets, and the node's (passed in from outside, e.g. by
        // socket activation: just as uncaptured).
        let mut network = network_inodes(&format!("/proc/{pid}/net"));
        network.extend(network_inodes("/proc/self/net"));
        let sockets = fds.iter().filter(|i| network.contains(i)).count();
        if sockets > 0 {
            found.push(Holder { pid, sockets });
        }
    }
    Ok(found)
}

fn collect_pids(cgroup: &Path, pids: &mut Vec<u32>) -> std::io::Result<()> {
    let text = std::fs::read_to_string(cgroup.join("cgroup.procs"))?;
    pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    for entry in std::fs::read_dir(cgroup)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), pids)?;
        }
    }
    Ok(())
}

/// The inodes of the sockets among `pid`'s open files (`socket:[INODE]`).
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The inodes of TCP, UDP and raw sockets in the network namespace whose `/proc/…/net`
/// directory is `net`.
fn network_inodes(net: &str) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in [
        "tcp", "tcp6", "udp", "udp6", "raw", "raw6", "udplite", "udplite6",
    ] {
        if let Ok(text) = std::fs::read_to_string(format!("{net}/{table}")) {
            inodes.extend(table_inodes(&text));
        }
    }
    inodes
}

/// The inode column of a `/proc/net/{tcp,udp,raw}` table.
fn table_inodes(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(9)?.parse().ok())
        .filter(|inode| *inode != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inode_column_of_a_proc_net_table_is_read() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:0BB9 00000000:0000 06 00000000:00000000 00:00000000 00000000     0        0 0 1\n";
        assert_eq!(table_inodes(tcp).collect::<Vec<_>>(), [123_456]);
    }

    #[test]
    fn this_process_holding_a_tcp_listener_is_found_by_its_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mine = socket_inodes(std::process::id());
        let network = network_inodes("/proc/self/net");
        assert!(mine.iter().any(|i| network.contains(i)));
        drop(listener);
    }
}
