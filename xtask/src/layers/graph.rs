//! The file-level import graph of a library crate: file A points at file B when A names a
//! `crate::…` or `super::…` path that lands in B.
//!
//! The module tree is read the way rustc reads it: from `lib.rs`, following `mod name;`
//! (`name.rs`, `name/mod.rs`, or a `#[path = "…"]`). A path resolves to the file of its
//! longest module prefix, so `super::Record` lands in the parent's `mod.rs` (re-exports are
//! not followed). Paths relative to the current module (`child::X`, `self::child::X`) are
//! the parent reaching down and are not counted. `super` inside an inline `mod tests { … }`
//! is the file's own module, so a test module's `use super::*` is no edge.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use anyhow::{Context, bail};

use super::lex::{Tok, tokens};

/// Module path (`["audit", "sink"]`) of a file.
pub type ModPath = Vec<String>;

/// The files of a crate and who imports whom.
#[derive(Debug, Default)]
pub struct Graph {
    /// Every file reached from `lib.rs` (path relative to the source directory, `/`
    /// separated) and its module path.
    pub files: BTreeMap<String, ModPath>,
    /// `(from, to)` file pairs, each with the first path that made the edge (as written,
    /// `super::sink::Counters`).
    pub edges: BTreeMap<(String, String), String>,
}

/// Reads the crate whose root is `src/lib.rs` under `src` and builds its graph.
pub fn load(src: &Path) -> anyhow::Result<Graph> {
    let mut files: BTreeMap<String, ModPath> = BTreeMap::new();
    let mut walks: BTreeMap<String, Walk> = BTreeMap::new();
    let mut queue = VecDeque::from([("lib.rs".to_owned(), ModPath::new(), true)]);
    while let Some((file, module, mod_rs)) = queue.pop_front() {
        let text = std::fs::read_to_string(src.join(&file))
            .with_context(|| format!("layers: read {}", src.join(&file).display()))?;
        let walk = walk(&tokens(&text));
        for decl in &walk.mods {
            let (child, child_mod_rs) = child_file(src, &file, mod_rs, decl)?;
            let mut child_module = module.clone();
            child_module.push(decl.name.clone());
            queue.push_back((child, child_module, child_mod_rs));
        }
        files.insert(file.clone(), module);
        walks.insert(file, walk);
    }
    let modules: BTreeMap<&ModPath, &String> = files.iter().map(|(f, m)| (m, f)).collect();
    let mut edges = BTreeMap::new();
    for (file, walk) in &walks {
        let Some(module) = files.get(file) else {
            continue;
        };
        for (inline, path) in &walk.paths {
            let Some(target) = resolve(module, inline, path, &modules) else {
                continue;
            };
            if target != file {
                edges
                    .entry((file.clone(), target.clone()))
                    .or_insert_with(|| path.join("::"));
            }
        }
    }
    Ok(Graph { files, edges })
}

/// A `mod name;` declaration, with its `#[path]` if it has one.
#[derive(Debug)]
struct ModDecl {
    name: String,
    path: Option<String>,
}

/// What one file declares and names.
#[derive(Debug, Default)]
struct Walk {
    /// Out-of-line child modules declared at the file's top level.
    mods: Vec<ModDecl>,
    /// Every `crate::…`/`super::…` path (use trees expanded), with the inline modules it
    /// sits in.
    paths: Vec<(Vec<String>, Vec<String>)>,
}

/// The file of child module `decl` of `file`, and whether the child is a `mod.rs`-like
/// file (its own children live beside it).
fn child_file(
    src: &Path,
    file: &str,
    mod_rs: bool,
    decl: &ModDecl,
) -> anyhow::Result<(String, bool)> {
    let here = Path::new(file).parent().unwrap_or(Path::new(""));
    if let Some(path) = &decl.path {
        let joined = here.join(path);
        return Ok((slashed(&joined), true));
    }
    let dir = if mod_rs {
        here.to_path_buf()
    } else {
        here.join(Path::new(file).file_stem().unwrap_or_default())
    };
    let flat = dir.join(format!("{}.rs", decl.name));
    let nested = dir.join(&decl.name).join("mod.rs");
    if src.join(&flat).is_file() {
        Ok((slashed(&flat), false))
    } else if src.join(&nested).is_file() {
        Ok((slashed(&nested), true))
    } else {
        bail!(
            "layers: {file} declares `mod {}` but neither {} nor {} exists",
            decl.name,
            flat.display(),
            nested.display()
        )
    }
}

fn slashed(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Collects `mod` declarations and `crate::`/`super::` paths, tracking inline modules.
fn walk(toks: &[Tok]) -> Walk {
    let ident = |i: usize| match toks.get(i) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let is = |i: usize, t: &Tok| toks.get(i) == Some(t);
    let mut out = Walk::default();
    let mut depth = 0usize;
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut pending_path: Option<String> = None;
    let mut i = 0;
    while i < toks.len() {
        let path_attr = is(i, &Tok::Punct('#'))
            && is(i + 1, &Tok::Punct('['))
            && ident(i + 2) == Some("path")
            && is(i + 3, &Tok::Punct('='));
        if let (true, Some(Tok::Str(path))) = (path_attr, toks.get(i + 4)) {
            pending_path = Some(path.clone());
            i += 5;
            continue;
        }
        match (ident(i), ident(i + 1)) {
            (Some("mod"), Some(name)) if is(i + 2, &Tok::Punct(';')) => {
                if inline.is_empty() {
                    out.mods.push(ModDecl {
                        name: name.to_owned(),
                        path: pending_path.take(),
                    });
                }
                pending_path = None;
                i += 3;
                continue;
            }
            (Some("mod"), Some(name)) if is(i + 2, &Tok::Punct('{')) => {
                depth += 1;
                inline.push((name.to_owned(), depth));
                pending_path = None;
                i += 3;
                continue;
            }
            (Some("crate" | "super"), _)
                if is(i + 1, &Tok::PathSep)
                    && !(i > 0 && (is(i - 1, &Tok::PathSep) || is(i - 1, &Tok::Punct('$')))) =>
            {
                let mut trees = Vec::new();
                i = tree(toks, i, Vec::new(), &mut trees);
                let names: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
                out.paths
                    .extend(trees.into_iter().map(|path| (names.clone(), path)));
                continue;
            }
            _ => {}
        }
        match toks.get(i) {
            Some(Tok::Punct('{')) => depth += 1,
            Some(Tok::Punct('}')) => {
                if inline.last().is_some_and(|&(_, d)| d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Some(Tok::Punct(';')) => pending_path = None,
            _ => {}
        }
        i += 1;
    }
    out
}

/// Parses a path or use tree at `at` (`a::b`, `a::{b, c::d as e, self}`, `a::*`) into the
/// paths it names, each prefixed by `prefix`. Returns the index after it.
fn tree(toks: &[Tok], at: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    let mut i = at;
    loop {
        match toks.get(i) {
            Some(Tok::Ident(s)) if s == "self" => i += 1,
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                i += 1;
            }
            Some(Tok::Punct('*')) => i += 1,
            Some(Tok::Punct('{')) => return group(toks, i + 1, &path, out),
            _ => break,
        }
        if toks.get(i) == Some(&Tok::PathSep) {
            i += 1;
        } else {
            break;
        }
    }
    if toks.get(i) == Some(&Tok::Ident("as".to_owned())) {
        i += 2;
    }
    out.push(path);
    i
}

/// The comma-separated trees of a `{ … }` group starting after the brace.
fn group(toks: &[Tok], at: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut i = at;
    while i < toks.len() {
        match toks.get(i) {
            Some(Tok::Punct('}')) => return i + 1,
            Some(Tok::Punct(',')) => i += 1,
            _ => {
                let next = tree(toks, i, prefix.to_vec(), out);
                if next == i {
                    // Not a tree (malformed source): stop rather than loop.
                    return i;
                }
                i = next;
            }
        }
    }
    i
}

/// The file a path written in `module` (inside inline modules `inline`) lands in.
fn resolve<'a>(
    module: &[String],
    inline: &[String],
    path: &[String],
    modules: &BTreeMap<&ModPath, &'a String>,
) -> Option<&'a String> {
    let mut base: Vec<String> = module.iter().chain(inline).cloned().collect();
    let mut rest = path;
    if rest.first().is_some_and(|s| s == "crate") {
        base.clear();
        rest = &rest[1..];
    }
    while let Some((first, tail)) = rest.split_first() {
        if first != "super" {
            break;
        }
        base.pop()?;
        rest = tail;
    }
    base.extend(rest.iter().cloned());
    (0..=base.len())
        .rev()
        .find_map(|n| modules.get(&base[..n].to_vec()).copied())
}
