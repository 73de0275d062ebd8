//! `xtask bench-client …`: the load clients no packaged tool provides, run by the harness
//! (inside `sluice exec` for the capture path). Each prints one JSON object on its last line.
//!
//! - `sse`: N concurrent SSE streams; per event, receive time minus the upstream's send stamp.
//! - `idle`: opens N TLS connections, one request each, prints `{"ready":…}`, holds them.
//! - `sni`: one TLS connection per request, optionally a new SNI every time (leaf cache
//!   misses), optionally two at once per name to check that concurrent misses mint once.
//! - `connect`: bare TCP connects (RST on close) for a duration: the connect rate (connects
//!   the server resets before the client polls them count: their handshake completed).

mod conn;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use conn::Target;

/// Arguments of the hidden `bench-client` subcommand.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Clone, Args)]
struct Dest {
    /// Address to dial (the upstream's; captured clients are redirected by the kernel).
    #[arg(long)]
    addr: SocketAddr,
    /// Host name for SNI and `Host`.
    #[arg(long)]
    host: String,
    /// Explicit proxy URL (`http://user:pass@127.0.0.1:3128`).
    #[arg(long)]
    proxy: Option<String>,
    /// CA (PEM) the client trusts.
    #[arg(long)]
    ca: PathBuf,
}

#[derive(Debug, Clone, Subcommand)]
enum Mode {
    /// SSE streams with per-event delay.
    Sse {
        #[command(flatten)]
        dest: Dest,
        /// Concurrent streams.
        #[arg(long, default_value_t = 100)]
        streams: usize,
        /// Events each stream carries.
        #[arg(long)]
        events: usize,
    },
    /// Many idle keep-alive TLS connections.
    Idle {
        #[command(flatten)]
        dest: Dest,
        /// Connections to open.
        #[arg(long)]
        conns: usize,
        /// How long to hold them after `ready`, in milliseconds.
        #[arg(long)]
        hold_ms: u64,
    },
    /// One TLS connection per request, same or new SNI each time.
    Sni {
        #[command(flatten)]
        dest: Dest,
        /// Connections in all.
        #[arg(long)]
        count: usize,
        /// Connections in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Use `<prefix><i>.<host>` as the SNI of connection i.
        #[arg(long)]
        distinct: Option<String>,
        /// Open two connections at once per name and compare the certificates served.
        #[arg(long)]
        pairs: bool,
    },
    /// Bare TCP connects for a duration.
    Connect {
        /// Address to connect to.
        #[arg(long)]
        addr: SocketAddr,
        /// How long, in milliseconds.
        #[arg(long)]
        duration_ms: u64,
        /// Connects in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
}

/// Runs one client mode to completion (bounded: every mode has a hard deadline).
pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = runtime.block_on(async move {
        match args.mode {
            Mode::Sse {
                dest,
                streams,
                events,
            } => sse(dest, streams, events).await,
            Mode::Idle {
                dest,
                conns,
                hold_ms,
            } => idle(dest, conns, hold_ms).await,
            Mode::Sni {
                dest,
                count,
                concurrency,
                distinct,
                pairs,
            } => sni(dest, count, concurrency, distinct, pairs).await,
            Mode::Connect {
                addr,
                duration_ms,
                concurrency,
            } => connect(addr, duration_ms, concurrency).await,
        }
    })?;
    println!("{out}");
    Ok(())
}

fn target(dest: &Dest) -> anyhow::Result<Arc<Target>> {
    let host_port = format!("{}:{}", dest.host, dest.addr.port());
    Ok(Arc::new(Target::new(
        dest.addr,
        &host_port,
        dest.proxy.as_deref(),
        &dest.ca,
    )?))
}

async fn sse(dest: Dest, streams: usize, events: usize) -> anyhow::Result<serde_json::Value> {
    let target = target(&dest)?;
    let deadline = Duration::from_secs(30) + Duration::from_millis(20 * events as u64);
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (target, host) = (target.clone(), dest.host.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::timeout(deadline, one_stream(&target, &host, events)).await
        }));
    }
    let mut delays = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        match task.await? {
            Ok(Ok(d)) => delays.extend(d),
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(_) => errors.push("timed out".into()),
        }
    }
    let received = delays.len();
    let (p50, p99) = super::tools::percentiles(&mut delays);
    Ok(
        json!({"events": received, "expected": streams * events, "p50_us": p50, "p99_us": p99,
              "max_us": delays.last(), "errors": errors.len(), "first_error": errors.first()}),
    )
}

async fn one_stream(target: &Target, host: &str, events: usize) -> anyhow::Result<Vec<f64>> {
    let mut tls = target.tls(host).await?;
    let req = format!("GET /sse HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
    tls.write_all(req.as_bytes()).await?;
    let mut delays = Vec::with_capacity(events);
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while delays.len() < events {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let now = tests::upstream::SseEvent::now_us();
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some(event) = std::str::from_utf8(&line)
                .ok()
                .and_then(tests::upstream::SseEvent::parse)
            {
                delays.push(now.saturating_sub(event.sent_us) as f64);
            }
        }
    }
    Ok(delays)
}

async fn idle(dest: Dest, conns: usize, hold_ms: u64) -> anyhow::Result<serde_json::Value> {
    let target = target(&dest)?;
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (target, host, gate) = (target.clone(), dest.host.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let mut tls = target.tls(&host).await?;
            let status = conn::get(&mut tls, &host, "/small").await?;
            anyhow::ensure!(status == 200, "status {status}");
            Ok::<_, anyhow::Error>(tls)
        }));
    }
    let mut open = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(120), task).await {
            Ok(Ok(Ok(tls))) => open.push(tls),
            Ok(Ok(Err(e))) => errors.push(format!("{e:#}")),
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => errors.push("timed out".into()),
        }
    }
    println!(
        "{}",
        json!({"ready": open.len(), "errors": errors.len(), "first_error": errors.first()})
    );
    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
    let held = open.len();
    drop(open);
    Ok(json!({"held": held, "errors": errors.len()}))
}

async fn sni(
    dest: Dest,
    count: usize,
    concurrency: usize,
    distinct: Option<String>,
    pairs: bool,
) -> anyhow::Result<serde_json::Value> {
    let target = target(&dest)?;
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..count {
        let name = match &distinct {
            Some(prefix) => format!("{prefix}{i}.{}", dest.host),
            None => dest.host.clone(),
        };
        let (target, gate) = (target.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            if pairs {
                let (a, b) = tokio::join!(one_request(&target, &name), one_request(&target, &name));
                let (a, b) = (a?, b?);
                Ok::<_, anyhow::Error>((a.0, Some(a.1 != b.1)))
            } else {
                Ok(one_request(&target, &name)
                    .await
                    .map(|(us, _)| (us, None))?)
            }
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    let mut mismatches = 0;
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(120), task).await {
            Ok(Ok(Ok((us, mismatch)))) => {
                latencies.push(us);
                mismatches += u64::from(mismatch == Some(true));
            }
            Ok(Ok(Err(e))) => errors.push(format!("{e:#}")),
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => errors.push("timed out".into()),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let done = latencies.len() * if pairs { 2 } else { 1 };
    let (p50, p99) = super::tools::percentiles(&mut latencies);
    Ok(
        json!({"rate": done as f64 / secs, "conns": done, "p50_us": p50, "p99_us": p99,
              "errors": errors.len(), "first_error": errors.first(), "cert_mismatches": mismatches}),
    )
}

/// One connection: TLS with SNI `name`, `GET /small`; returns (µs, leaf certificate DER).
async fn one_request(target: &Target, name: &str) -> anyhow::Result<(f64, Vec<u8>)> {
    let t0 = Instant::now();
    let mut tls = target.tls(name).await?;
    let status = conn::get(&mut tls, name, "/small").await?;
    anyhow::ensure!(status == 200, "status {status} for {name}");
    let us = t0.elapsed().as_secs_f64() * 1e6;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .context("client: no peer certificate")?;
    Ok((us, leaf))
}

async fn connect(
    addr: SocketAddr,
    duration_ms: u64,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    let ok = Arc::new(AtomicU64::new(0));
    let reset = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_millis(duration_ms);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (ok, reset) = (ok.clone(), reset.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            while Instant::now() < until {
                match conn::connect_rst(addr).await {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    // The handshake completed and the server reset the connection before
                    // the client polled it: a connect all the same.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        reset.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => *errors.entry(error_kind(&e)).or_default() += 1,
                }
            }
            errors
        }));
    }
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        for (kind, n) in task.await.context("client: connect task")? {
            *errors.entry(kind).or_default() += n;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let reset = reset.load(Ordering::Relaxed);
    let n = ok.load(Ordering::Relaxed) + reset;
    let failed: u64 = errors.values().sum();
    Ok(
        json!({"rate": n as f64 / secs, "connects": n, "reset_by_peer": reset,
              "errors": failed, "error_kinds": errors}),
    )
}

/// `EADDRNOTAVAIL` … for an OS error, the error kind otherwise.
fn error_kind(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{:?}", nix::errno::Errno::from_raw(code)),
        None => format!("{:?}", e.kind()),
    }
}

// Not `tests`: that name is the test-lab crate this module uses.
#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn errors_are_named_by_errno() {
        assert_eq!(
            error_kind(&std::io::Error::from_raw_os_error(99)),
            "EADDRNOTAVAIL"
        );
        assert_eq!(
            error_kind(&std::io::Error::from(std::io::ErrorKind::TimedOut)),
            "TimedOut"
        );
    }
}
