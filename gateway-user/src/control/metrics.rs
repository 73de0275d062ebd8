//! `GET /metrics`: the node's counters in the Prometheus text format.

use std::fmt::Write;

use crate::daemon::Node;

/// Renders the node's metrics.
pub fn render(node: &Node) -> String {
    let health = node.health();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    gauge(
        "sluice_sandboxes",
        "Enrolled sandboxes.",
        "gauge",
        health.sandboxes as u64,
    );
    gauge(
        "sluice_captured_connections",
        "Live captured connections in the kernel map.",
        "gauge",
        health.connections as u64,
    );
    gauge(
        "sluice_requests_total",
        "Intercepted HTTP requests, whatever their decision.",
        "counter",
        node.audit.requests(),
    );
    gauge(
        "sluice_refusals_total",
        "Refusals (requests, connections and DNS queries with decision deny).",
        "counter",
        node.audit.refusals(),
    );
    gauge(
        "sluice_audit_records_written_total",
        "Audit records written.",
        "counter",
        node.audit.written(),
    );
    gauge(
        "sluice_audit_records_spooled_total",
        "Audit records put in the outage spool because Redis did not answer.",
        "counter",
        node.audit.spooled(),
    );
    gauge(
        "sluice_audit_records_replayed_total",
        "Spooled audit records later confirmed by Redis.",
        "counter",
        node.audit.replayed(),
    );
    gauge(
        "sluice_audit_records_dropped_total",
        "Audit records lost (spool full or failing, file unwritable, writer stopped). Alert on it.",
        "counter",
        node.audit.dropped(),
    );
    let minter = node.proxy.intercept.tls.minter();
    gauge(
        "sluice_tls_leaves_minted_total",
        "TLS leaves signed by the Sluice CA (leaf cache misses).",
        "counter",
        minter.minted_count(),
    );
    let mint_micros = u64::try_from(minter.mint_time().as_micros()).unwrap_or(u64::MAX);
    gauge(
        "sluice_tls_leaf_mint_microseconds_total",
        "Time spent signing leaves, in microseconds.",
        "counter",
        mint_micros,
    );
    let cache = minter.cache_stats();
    gauge(
        "sluice_tls_leaf_cache_hits_total",
        "TLS handshakes whose leaf was already cached (or being minted).",
        "counter",
        cache.hits,
    );
    gauge(
        "sluice_tls_leaf_cache_misses_total",
        "TLS handshakes that minted a leaf (new, evicted or expiring name).",
        "counter",
        cache.misses,
    );
    gauge(
        "sluice_tls_leaf_cache_evictions_total",
        "Names evicted from the leaf cache because it was full (least recently used first).",
        "counter",
        cache.evictions,
    );
    gauge(
        "sluice_tls_leaf_cache_entries",
        "Names in the leaf cache.",
        "gauge",
        cache.entries as u64,
    );
    gauge(
        "sluice_tls_leaf_cache_capacity",
        "Most names the leaf cache keeps (tls.leaf_cache_size).",
        "gauge",
        cache.capacity as u64,
    );
    gauge(
        "sluice_upstream_pools",
        "Upstream connection pools kept (one per destination, egress, host and worker; bounded, least recently used dropped).",
        "gauge",
        node.proxy.intercept.upstream.pooled_hosts() as u64,
    );
    gauge(
        "sluice_dns_names_over_budget_total",
        "DNS queries refused because the sandbox asked for more distinct names in a minute than dns.max_names_per_minute.",
        "counter",
        node.dns_budget.refused(),
    );
    if let Some(bytes) = crate::daemon::memory::heap_in_use() {
        gauge(
            "sluice_heap_in_use_bytes",
            "Bytes allocated and not yet freed (glibc mallinfo2); RSS above it is freed memory the allocator keeps.",
            "gauge",
            bytes,
        );
    }
    let reloads = node.reloads();
    let _ = writeln!(
        out,
        "# HELP sluice_config_reloads_total Configuration reloads, by result."
    );
    let _ = writeln!(out, "# TYPE sluice_config_reloads_total counter");
    for (result, n) in [("ok", reloads.ok), ("refused", reloads.refused)] {
        let _ = writeln!(
            out,
            "sluice_config_reloads_total{{result=\"{result}\"}} {n}"
        );
    }
    if let Some(workers) = &node.proxy.workers {
        let _ = writeln!(
            out,
            "# HELP sluice_worker_connections Connections each thread-per-core worker is serving."
        );
        let _ = writeln!(out, "# TYPE sluice_worker_connections gauge");
        for (worker, n) in workers.active().into_iter().enumerate() {
            let _ = writeln!(out, "sluice_worker_connections{{worker=\"{worker}\"}} {n}");
        }
    }
    node.proxy.trust_failures.render(&mut out);
    out
}
