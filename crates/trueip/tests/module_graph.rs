//! The modules of the core and the gateway point one way: no module reaches, through its
//! `crate::` paths, a module that reaches back to it. A cycle means two modules that
//! cannot be read (or changed) one at a time.
//!
//! The graph is read from the source: a file `src/a.rs` or `src/a/**.rs` belongs to module
//! `a`, and every `crate::b` it names outside its tests is an edge `a -> b`. `lib.rs` and
//! `main.rs` (the roots, which name every module) are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its test module (a `#[cfg(test)]` `mod`, which ends the
/// file) and its comments. Other `#[cfg(test)]` items stay: their edges count.
fn code(text: &str) -> String {
    let test_mod = text.match_indices("#[cfg(test)]").find(|(at, attr)| {
        let rest = text.get(at + attr.len()..).unwrap_or_default();
        skip_attributes(rest).starts_with("mod ")
    });
    let body = match test_mod {
        Some((at, _)) => text.get(..at).unwrap_or(text),
        None => text,
    };
    body.lines()
        .map(|line| match line.find("//") {
            Some(at) => line.get(..at).unwrap_or(line),
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `text` names after `prefix` (`crate::`, `super::`, `crate::rules::`): the
/// first name of each path, and of every item directly inside `prefix{...}`; never `me`.
fn edges_in(text: &str, prefix: &str, me: &str) -> BTreeSet<String> {
    let mut edges = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        let before = text.get(..at).and_then(|t| t.chars().last());
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue; // `$crate::`, `mycrate::`, `a::super::`
        }
        let rest = text.get(at + prefix.len()..).unwrap_or_default();
        if let Some(inside) = rest.strip_prefix('{') {
            // `use crate::{a, b::c}`
            let (mut depth, mut item) = (0, String::new());
            for c in inside.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item.clear(),
                    _ => item.push(c),
                }
                let name: String = item
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if depth == 0 && !name.is_empty() && name != me && name != "self" {
                    edges.insert(name);
                }
            }
            continue;
        }
        let target: String =
            rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !target.is_empty() && target != me {
            edges.insert(target);
        }
    }
    edges
}

/// `text` after the attributes it starts with (`#[allow(\n ...\n)]` spans lines).
fn skip_attributes(text: &str) -> &str {
    let mut rest = text.trim_start();
    while let Some(inside) = rest.strip_prefix("#[") {
        let mut depth = 1;
        let mut end = inside.len();
        for (i, c) in inside.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = inside.get(end..).unwrap_or_default().trim_start();
    }
    rest
}

/// The modules a directory's `mod.rs` declares for tests only (`#[cfg(test)] mod fixtures;`):
/// not part of the code's graph.
fn test_only_modules(mod_rs: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(mod_rs).unwrap_or_default();
    text.match_indices("#[cfg(test)]")
        .filter_map(|(at, attr)| {
            let rest = skip_attributes(text.get(at + attr.len()..).unwrap_or_default());
            let name = rest.strip_prefix("mod ")?.split(';').next()?;
            (!name.contains('{')).then(|| name.trim().to_string())
        })
        .collect()
}

/// The graph of the files under `root`: a file `root/a.rs` or `root/a/**.rs` belongs to
/// node `a`, and every module it names after one of `prefixes` is an edge (kept when it is
/// a node). Files of the nodes `skip` names are left out.
fn graph_of(root: &Path, skip: impl Fn(&str) -> bool, prefixes: &[String]) -> Graph {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(root).expect("under the root");
        let first = rel.components().next().and_then(|c| c.as_os_str().to_str()).expect("a path");
        let module = first.trim_end_matches(".rs").to_string();
        if skip(&module) {
            continue;
        }
        let text = code(&fs::read_to_string(&file).expect("read source"));
        let edges = graph.entry(module.clone()).or_default();
        for prefix in prefixes {
            edges.extend(edges_in(&text, prefix, &module));
        }
    }
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for edges in graph.values_mut() {
        edges.retain(|e| known.contains(e));
    }
    graph
}

/// The graph of a crate's modules: `crate::b` in module `a` is an edge `a -> b`. `lib.rs`
/// and `main.rs` (the roots, which name every module) are left out.
fn graph(src: &Path) -> Graph {
    graph_of(src, |m| m == "lib" || m == "main", &["crate::".to_string()])
}

/// The graph inside directory module `dir` (`src/rules/`): its files are the nodes, and
/// `super::x` or `crate::dir::x` in one names sibling `x`. `mod.rs`, the root that declares
/// them all, is left out, and so are the modules it declares for tests only; a file that
/// reaches the root (`super::Thing`) names no sibling.
fn inner_graph(src: &Path, dir: &str) -> Graph {
    let test_only = test_only_modules(&src.join(dir).join("mod.rs"));
    graph_of(
        &src.join(dir),
        |m| m == "mod" || test_only.contains(m),
        &["super::".to_string(), format!("crate::{dir}::")],
    )
}

/// One cycle, if there is any: the modules on it, in order.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = path.iter().position(|n| n == next).unwrap_or(0);
                    let mut found: Vec<String> = path.get(from..).unwrap_or_default().to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Mark::New => {
                    if let Some(found) = visit(next, graph, marks, path) {
                        return Some(found);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(found) = visit(node, graph, &mut marks, &mut Vec::new())
        {
            return Some(found);
        }
    }
    None
}

fn check(crate_dir: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(crate_dir).join("src");
    let graph = graph(&src);
    assert!(graph.len() > 3, "read the modules of {}", src.display());
    if let Some(found) = cycle(&graph) {
        panic!(
            "{crate_dir}: modules import each other in a circle: {}\nfull graph: {graph:#?}",
            found.join(" -> ")
        );
    }
    // And inside each directory module, its files point one way too.
    let mut dirs = 0;
    for entry in fs::read_dir(&src).expect("read src").flatten() {
        let path = entry.path();
        let Some(dir) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !path.is_dir() {
            continue;
        }
        dirs += 1;
        let inner = inner_graph(&src, dir);
        if let Some(found) = cycle(&inner) {
            panic!(
                "{crate_dir}: the files of {dir}/ import each other in a circle: {}\nfull graph: {inner:#?}",
                found.join(" -> ")
            );
        }
    }
    assert!(dirs > 0, "read the directory modules of {}", src.display());
}

#[test]
fn the_core_has_no_import_cycle() {
    check("trueip");
}

#[test]
fn the_gateway_has_no_import_cycle() {
    check("trueip-gateway");
}

#[test]
fn a_cycle_is_found() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    g.entry("d".into()).or_default();
    assert_eq!(cycle(&g), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    g.entry("c".into()).or_default().clear();
    assert_eq!(cycle(&g), None);
}
