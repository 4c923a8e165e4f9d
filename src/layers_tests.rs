//! The structure reads one way (docs/architecture.md, STYLE.md): faces ->
//! app -> domain -> stores. This test reads every `crate::<folder>` path in
//! `src/` (outside test modules) and checks that the folders form no cycle
//! and that no domain or store folder reaches up into a face or the app;
//! and that functions stay short enough to read (80 lines), data literals
//! aside.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const FACES: [&str; 4] = ["cli", "web", "stack", "server"];
const LOWER: [&str; 11] = [
    "lab",
    "mutants",
    "mail",
    "evidence",
    "export",
    "provision",
    "scoring",
    "submissions",
    "generate",
    "control",
    "metrics",
];

/// Every `.rs` file of `src/` outside tests, as (path relative to `src/`,
/// its code before any `#[cfg(test)]`).
fn sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = vec![];
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir").filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs")
                || path.to_string_lossy().contains("tests")
            {
                continue;
            }
            let rel = path.strip_prefix(&src).expect("under src");
            let text = std::fs::read_to_string(&path).expect("read");
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            out.push((rel.display().to_string(), code));
        }
    }
    out
}

/// Folder (or top-level file) -> the folders its code names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tops: BTreeSet<String> = std::fs::read_dir(&src)
        .expect("src")
        .filter_map(Result::ok)
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, code) in sources() {
        let top = rel
            .split('/')
            .next()
            .unwrap_or_default()
            .trim_end_matches(".rs")
            .to_string();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if name != top && tops.contains(&name) {
                out.entry(top.clone()).or_default().insert(name);
            }
        }
    }
    out
}

/// A path from `from` back to itself, if there is one.
fn cycle_through(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut paths = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = paths.pop() {
        let last = path.last().expect("non-empty");
        for next in g.get(last).into_iter().flatten() {
            if next == from {
                return Some([path.clone(), vec![next.clone()]].concat());
            }
            if seen.insert(next.clone()) {
                paths.push([path.clone(), vec![next.clone()]].concat());
            }
        }
    }
    None
}

#[test]
fn folders_import_each_other_one_way_only() {
    let g = graph();
    for folder in g.keys() {
        if let Some(cycle) = cycle_through(&g, folder) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
    for lower in LOWER {
        for to in g.get(lower).into_iter().flatten() {
            assert!(
                !FACES.contains(&to.as_str()) && to != "app",
                "{lower} (domain or store) uses {to} (a face or the app)"
            );
        }
    }
    assert!(g.get("web").is_none_or(|to| !to.contains("cli")));
    assert!(g.get("cli").is_some_and(|to| to.contains("app")));
}

/// Functions that are data literals (a dashboard, metric definitions).
const LONG_DATA: [&str; 2] = ["generate/grafana.rs:dashboard", "metrics.rs:register"];

/// `(file, function, lines)` of every function in `src/` outside tests.
fn function_lengths() -> Vec<(String, String, usize)> {
    let mut out = vec![];
    for (rel, code) in sources() {
        let lines: Vec<&str> = code.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let body = line.trim_start();
            let indent = &line[..line.len() - body.len()];
            let head = ["pub ", "pub(crate) ", "pub(super) ", "async ", "const "]
                .iter()
                .fold(body, |b, p| b.strip_prefix(p).unwrap_or(b));
            let head = head.strip_prefix("async ").unwrap_or(head);
            let Some(name) = head.strip_prefix("fn ") else {
                continue;
            };
            if line.trim_end().ends_with(';') {
                continue;
            }
            let name: String = name
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let end = lines[i..]
                .iter()
                .position(|l| l.trim_end() == format!("{indent}}}"))
                .unwrap_or(0);
            out.push((rel.clone(), name, end + 1));
        }
    }
    out
}

#[test]
fn functions_fit_on_a_screen_and_a_half() {
    let long: Vec<String> = function_lengths()
        .into_iter()
        .filter(|(file, name, n)| {
            *n > 80 && !LONG_DATA.contains(&format!("{file}:{name}").as_str())
        })
        .map(|(file, name, n)| format!("{file}: {name} ({n} lines)"))
        .collect();
    assert!(long.is_empty(), "split these along their seams: {long:#?}");
    // The measure sees the long ones it is meant to see.
    assert!(function_lengths()
        .iter()
        .any(|(f, n, len)| f == "generate/grafana.rs" && n == "dashboard" && *len > 80));
}
