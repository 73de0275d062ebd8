//! Where the daemon's CPU goes: `perf report` output folded into a few categories, so a
//! report says what bounds a workload, not only which symbols are hottest.
//!
//! The kernel's share is split by the system call it was spent under (children time of
//! each entry point, so sending includes the loopback delivery and the receiver's wake-up it
//! triggers); user space by the library a symbol belongs to (self time).

const SENDING: &str = "kernel: sending (writev/sendmsg/write, incl. loopback delivery)";
const RECEIVING: &str = "kernel: receiving (recv/read)";

/// Kernel entry points (children time) and the category each counts for.
const KERNEL: &[(&str, &str)] = &[
    ("do_writev", SENDING),
    ("__sys_sendto", SENDING),
    ("___sys_sendmsg", SENDING),
    ("ksys_write", SENDING),
    ("__sys_recvfrom", RECEIVING),
    ("___sys_recvmsg", RECEIVING),
    ("ksys_read", RECEIVING),
    (
        "__x64_sys_futex",
        "kernel: futex (threads waking each other)",
    ),
    ("do_epoll_wait", "kernel: epoll_wait"),
];

/// User-space categories, the first whose pattern a symbol contains wins.
const USER: &[(&str, &[&str])] = &[
    (
        "allocator (malloc/free)",
        &[
            "malloc",
            "] free",
            "cfree",
            "_int_",
            "realloc",
            "calloc",
            "unlink_chunk",
            "tcache",
        ],
    ),
    ("memory copies", &["memmove", "memcpy", "memset", "memcmp"]),
    (
        "TLS (rustls, ring; OpenSSL for HAProxy)",
        &[
            "libssl",
            "libcrypto",
            "rustls",
            "ring::",
            "ring_core",
            "aes",
            "gcm",
            "ghash",
            "chacha",
            "sha2",
        ],
    ),
    (
        "HTTP (hyper, h2, http)",
        &["hyper", "h2::", "http::", "httparse", "bytes::"],
    ),
    (
        "async runtime (tokio, mio)",
        &["tokio", "mio::", "futures_", "syscall", "__lll_lock"],
    ),
    ("audit records (serde_json)", &["serde", "audit"]),
    ("Sluice's own code", &["sluice::"]),
    ("HAProxy's own code (HTTP, proxying)", &["haproxy "]),
];

/// Categories and their share of the samples (percent), largest first. `children` is
/// `perf report --children --sort symbol -g none`, `own` is `perf report --no-children
/// --sort dso,symbol -g none` (every symbol, no limit).
pub fn breakdown(children: &str, own: &str) -> Vec<(String, f64)> {
    let mut shares: Vec<(String, f64)> = Vec::new();
    let mut add = |name: &str, pct: f64| match shares.iter_mut().find(|(n, _)| n == name) {
        Some((_, total)) => *total += pct,
        None => shares.push((name.to_owned(), pct)),
    };
    let mut kernel_total = 0.0;
    let mut kernel_named = 0.0;
    for line in own.lines() {
        let Some((pct, rest)) = percent(line) else {
            continue;
        };
        if rest.contains("[kernel") || rest.contains("[k]") {
            kernel_total += pct;
            continue;
        }
        let name = USER
            .iter()
            .find(|(_, pats)| pats.iter().any(|p| rest.contains(p)))
            .map_or("other user space", |(name, _)| name);
        add(name, pct);
    }
    for line in children.lines() {
        let Some((pct, rest)) = percent(line) else {
            continue;
        };
        let Some(symbol) = rest
            .split_whitespace()
            .find(|w| !w.starts_with('[') && !w.ends_with('%'))
        else {
            continue;
        };
        if let Some((_, name)) = KERNEL.iter().find(|(entry, _)| *entry == symbol) {
            add(name, pct);
            kernel_named += pct;
        }
    }
    add("kernel: other", (kernel_total - kernel_named).max(0.0));
    shares.retain(|(_, pct)| *pct >= 0.05);
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    shares
}

/// The first percentage of a `perf report` line and what follows it (for `--children`, the
/// children column: the first one).
fn percent(line: &str) -> Option<(f64, &str)> {
    let line = line.trim_start();
    if line.starts_with('#') {
        return None;
    }
    let (first, rest) = line.split_once('%')?;
    let pct = first.trim().parse().ok()?;
    Some((pct, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_kernel_by_entry_point_and_user_space_by_library() {
        let own = "\
# Overhead  Shared Object  Symbol
    30.00%  [kernel.kallsyms]  [k] _raw_spin_unlock_irqrestore
    20.00%  [kernel.kallsyms]  [k] finish_task_switch.isra.0
    10.00%  libc.so.6          [.] _int_malloc
     5.00%  libc.so.6          [.] __memmove_avx512_unaligned_erms
    10.00%  sluice             [.] <rustls::conn::ConnectionCore<Data>>::process_new_packets
     8.00%  sluice             [.] hyper::proto::h1::dispatch::Dispatcher::poll_catch
     7.00%  sluice             [.] sluice::intercept::forward::handle::{{closure}}
     6.00%  sluice             [.] tokio::runtime::scheduler::multi_thread::worker::Context::run
     4.00%  sluice             [.] core::fmt::write
";
        let children = "\
    45.00%     0.10%  [k] do_syscall_64
    25.00%     0.00%  [k] do_writev
     5.00%     0.00%  [k] __sys_recvfrom
    10.00%     0.05%  [k] __x64_sys_futex
";
        let got = breakdown(children, own);
        let get = |name: &str| {
            got.iter()
                .find(|(n, _)| n.starts_with(name))
                .map(|(_, p)| *p)
                .unwrap_or_else(|| panic!("{name} missing from {got:?}"))
        };
        assert_eq!(get("kernel: sending"), 25.0);
        assert_eq!(get("kernel: receiving"), 5.0);
        assert_eq!(get("kernel: futex"), 10.0);
        assert_eq!(get("kernel: other"), 10.0, "50% kernel, 40% named");
        assert_eq!(get("allocator"), 10.0);
        assert_eq!(get("memory copies"), 5.0);
        assert_eq!(get("TLS"), 10.0);
        assert_eq!(get("HTTP"), 8.0);
        assert_eq!(get("Sluice's own"), 7.0);
        assert_eq!(get("async runtime"), 6.0);
        assert_eq!(get("other user space"), 4.0);
        assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "largest first");
        let total: f64 = got.iter().map(|(_, p)| p).sum();
        assert!((total - 100.0).abs() < 1e-9, "{total}");
    }

    #[test]
    fn haproxy_code_and_openssl_have_their_own_categories() {
        let own = "\
    40.00%  [kernel.kallsyms]  [k] finish_task_switch.isra.0
    25.00%  haproxy            [.] h1_headers_to_hdr_list
    20.00%  libcrypto.so.3     [.] aesni_gcm_encrypt
    10.00%  libssl.so.3        [.] ssl3_read_bytes
     5.00%  libc.so.6          [.] _int_malloc
";
        let got = breakdown("", own);
        let get = |name: &str| {
            got.iter()
                .find(|(n, _)| n.starts_with(name))
                .map(|(_, p)| *p)
        };
        assert_eq!(get("HAProxy's own"), Some(25.0), "{got:?}");
        assert_eq!(get("TLS"), Some(30.0), "{got:?}");
        assert_eq!(get("allocator"), Some(5.0), "{got:?}");
        assert_eq!(get("kernel: other"), Some(40.0), "{got:?}");
        assert_eq!(get("other user space"), None, "{got:?}");
    }
}
