//! `cargo xtask layers`: the daemon crate's source files form layers. No two files import
//! each other, and no file imports from a layer above its own.
//!
//! [`graph`] reads `gateway-user/src` into a file-level import graph (`crate::…` and
//! `super::…` paths); [`check`] lists what breaks the rules. A unit test runs the check on
//! the real tree, so `cargo test -p xtask` (and with it `cargo xtask test`) fails when a
//! cycle comes back.

mod graph;
mod lex;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::bail;

pub use graph::{Graph, load};

/// Pairs of files that still import each other, each pair once (either order).
///
/// Only cycles being taken apart belong here; when one is broken, `check` fails until its
/// entry is removed, so the list only shrinks.
pub const ALLOWED_CYCLES: &[(&str, &str)] = &[];

/// Imports that run up a layer: no file in the first module may name the second.
pub const FORBIDDEN: &[Forbidden] = &[Forbidden {
    from: "daemon",
    to: "control",
    why: "the control API sits above the daemon; shared types live in `crate::api`",
}];

/// A module that must not import from another.
#[derive(Debug, Clone, Copy)]
pub struct Forbidden {
    /// The lower top-level module (its files and submodules).
    pub from: &'static str,
    /// The higher top-level module it must not name.
    pub to: &'static str,
    /// Why, shown with a violation.
    pub why: &'static str,
}

/// Checks `src` (default `gateway-user/src`) and fails with every problem found.
pub fn run(src: Option<&Path>) -> anyhow::Result<()> {
    let graph = load(src.unwrap_or(&daemon_src()))?;
    let problems = check(&graph, ALLOWED_CYCLES, FORBIDDEN);
    if problems.is_empty() {
        println!(
            "layers: {} files, {} imports, no cycles",
            graph.files.len(),
            graph.edges.len()
        );
        return Ok(());
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    bail!("layers: {} problems", problems.len())
}

/// The daemon crate's source directory.
pub fn daemon_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway-user/src")
}

/// Every rule `graph` breaks, one line each: pairs of files that import each other (unless
/// in `allowed`), allowlist entries that are no longer cycles, and forbidden imports.
pub fn check(graph: &Graph, allowed: &[(&str, &str)], forbidden: &[Forbidden]) -> Vec<String> {
    let mut problems = Vec::new();
    let is_allowed = |a: &str, b: &str| {
        allowed
            .iter()
            .any(|&(x, y)| (x, y) == (a, b) || (x, y) == (b, a))
    };
    for ((a, b), there) in &graph.edges {
        if a >= b {
            continue;
        }
        let Some(back) = graph.edges.get(&(b.clone(), a.clone())) else {
            continue;
        };
        if !is_allowed(a, b) {
            problems.push(format!(
                "cycle: {a} <-> {b} ({a} uses `{there}`, {b} uses `{back}`); move what both \
                 need into the lower file or a new one both use"
            ));
        }
    }
    for &(a, b) in allowed {
        let both = |x: &str, y: &str| graph.edges.contains_key(&(x.to_owned(), y.to_owned()));
        if !(both(a, b) && both(b, a)) {
            problems.push(format!(
                "allowlist: {a} <-> {b} is no longer a cycle; remove it from ALLOWED_CYCLES"
            ));
        }
    }
    for rule in forbidden {
        for ((a, b), path) in &graph.edges {
            let module_of = |file: &String| graph.files.get(file).and_then(|m| m.first());
            if module_of(a).is_some_and(|m| m == rule.from)
                && module_of(b).is_some_and(|m| m == rule.to)
            {
                problems.push(format!(
                    "layer: {a} uses `{path}` ({b}): {} must not import {} ({})",
                    rule.from, rule.to, rule.why
                ));
            }
        }
    }
    problems
}
