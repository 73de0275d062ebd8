use std::path::Path;

use super::lex::{Tok, tokens};
use super::{ALLOWED_CYCLES, FORBIDDEN, Forbidden, check, daemon_src, load};

/// Writes `files` (path, text) under a fresh directory.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn edges(dir: &Path) -> Vec<(String, String)> {
    load(dir).unwrap().edges.into_keys().collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

const RULES: &[Forbidden] = &[Forbidden {
    from: "daemon",
    to: "control",
    why: "test",
}];

#[test]
fn the_daemon_crate_has_no_import_cycles_and_no_upward_imports() {
    let graph = load(&daemon_src()).unwrap();
    assert!(graph.files.len() > 100, "{} files", graph.files.len());
    let problems = check(&graph, ALLOWED_CYCLES, FORBIDDEN);
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn files_that_import_each_other_are_reported_with_both_paths() {
    let dir = tree(&[
        ("lib.rs", "mod a;\npub mod b;\n"),
        ("a.rs", "use crate::b::{self, Y};\npub struct X;\n"),
        ("b.rs", "pub struct Y;\nfn f() { let _ = super::a::X; }\n"),
    ]);
    let graph = load(dir.path()).unwrap();
    let problems = check(&graph, &[], &[]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("a.rs <-> b.rs"), "{problems:?}");
    assert!(problems[0].contains("a.rs uses `crate::b`"), "{problems:?}");
    assert!(
        problems[0].contains("b.rs uses `super::a::X`"),
        "{problems:?}"
    );

    // Allowed while listed; a listed pair that is no cycle any more must be removed.
    assert!(check(&graph, &[("b.rs", "a.rs")], &[]).is_empty());
    let stale = check(&graph, &[("a.rs", "b.rs"), ("a.rs", "lib.rs")], &[]);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(stale[0].contains("no longer a cycle"), "{stale:?}");
}

#[test]
fn upward_imports_are_reported_wherever_they_are_written() {
    let dir = tree(&[
        ("lib.rs", "mod api;\nmod control;\nmod daemon;\n"),
        ("api.rs", "pub struct Health;\n"),
        ("control/mod.rs", "mod types;\nuse crate::daemon::Node;\n"),
        ("control/types.rs", "pub struct Token;\n"),
        ("daemon/mod.rs", "mod node;\npub struct Node;\n"),
        (
            "daemon/node.rs",
            "use crate::api::Health;\nfn f() { crate::control::types::Token; }\n",
        ),
    ]);
    let graph = load(dir.path()).unwrap();
    let problems = check(&graph, &[], RULES);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("daemon/node.rs uses `crate::control::types::Token`"),
        "{problems:?}"
    );
}

#[test]
fn comments_strings_tests_and_child_paths_are_not_edges() {
    let dir = tree(&[
        ("lib.rs", "pub mod m;\n"),
        (
            "m/mod.rs",
            "//! See [`super::m::a`].\nmod a;\nmod b;\npub use a::X;\nuse self::b::Y;\n",
        ),
        (
            "m/a.rs",
            "/* crate::m::b */ pub struct X;\nconst S: &str = \"super::b::Y\";\n\
             const R: &str = r#\"crate::m::b\"#;\nconst C: char = '\"';\n\
             fn f<'a>(_: &'a str) {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
        ),
        ("m/b.rs", "pub struct Y;\nuse super::a::X;\n"),
    ]);
    assert_eq!(edges(dir.path()), vec![pair("m/b.rs", "m/a.rs")]);
}

#[test]
fn path_attributes_and_nested_supers_resolve_to_the_right_file() {
    let dir = tree(&[
        ("lib.rs", "pub mod p;\n"),
        ("p/mod.rs", "mod eval;\nmod q;\npub struct Rules;\n"),
        (
            "p/eval.rs",
            "#[cfg(test)]\n#[path = \"eval_tests.rs\"]\nmod tests;\n",
        ),
        (
            "p/eval_tests.rs",
            "use super::super::Rules;\nuse super::*;\n",
        ),
        ("p/q.rs", "mod r;\n"),
        (
            "p/q/r.rs",
            "use super::super::eval;\nuse crate::p::{q, Rules as R};\n",
        ),
    ]);
    assert_eq!(
        edges(dir.path()),
        vec![
            pair("p/eval_tests.rs", "p/eval.rs"),
            pair("p/eval_tests.rs", "p/mod.rs"),
            pair("p/q/r.rs", "p/eval.rs"),
            pair("p/q/r.rs", "p/mod.rs"),
            pair("p/q/r.rs", "p/q.rs"),
        ]
    );
}

#[test]
fn a_missing_module_file_is_an_error() {
    let dir = tree(&[("lib.rs", "mod gone;\n")]);
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("mod gone"), "{err}");
}

#[test]
fn the_lexer_keeps_paths_and_drops_comments_and_literals() {
    let toks = tokens("use super::x; // crate::y\nlet c = '\\''; b\"crate::z\"; r#type");
    let idents: Vec<&str> = toks
        .iter()
        .filter_map(|t| match t {
            Tok::Ident(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(idents, ["use", "super", "x", "let", "c", "type"]);
}
