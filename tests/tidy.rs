//! Conventions that matter, as a test rather than prose (after rust-analyzer's `xtask/src/tidy.rs`): every source
//! file says what it is for in a `//!` line, the core never reaches for I/O, a clock or a random source, no folder
//! of src holds an import circle, and no source file runs past 700 lines before its tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    edgecdp::core::base::sort::sort(&mut out);
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_source_file_opens_with_a_doc_line() {
    let mut missing = Vec::new();
    for dir in ["src", "tests", "benches"] {
        for file in rust_files(&root().join(dir)) {
            let text = fs::read_to_string(&file).expect("readable source");
            if !text.trim_start().starts_with("//!") {
                missing.push(file.strip_prefix(root()).unwrap_or(&file).display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "files without a //! line saying what they are for: {missing:?}");
}

/// What the core must never name: the I/O crates of the shells, the clock, and sources of randomness. Time and
/// randomness come in as arguments (ARCHITECTURE.md, the first Architecture Invariant).
const FORBIDDEN_IN_CORE: [&str; 10] = [
    "worker::",
    "web_sys",
    "js_sys",
    "wasm_bindgen",
    "SystemTime",
    "Instant::now",
    "Date::now",
    "getrandom",
    "rand::",
    "thread_rng",
];

/// The forbidden words a line of code names, outside its comment.
fn forbidden_in(line: &str) -> Vec<&'static str> {
    let code = line.split("//").next().unwrap_or("");
    FORBIDDEN_IN_CORE.iter().copied().filter(|w| code.contains(w)).collect()
}

#[test]
fn the_core_does_no_io_and_reads_no_clock_or_randomness() {
    let mut found = Vec::new();
    for file in rust_files(&root().join("src/core")) {
        let text = fs::read_to_string(&file).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            for word in forbidden_in(line) {
                found.push(format!("{}:{}: {word}", file.strip_prefix(root()).unwrap_or(&file).display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "the core names I/O, a clock or randomness:\n{}", found.join("\n"));
}

#[test]
fn the_checks_above_can_fail() {
    // The scanner sees a forbidden word in code, and ignores it in a comment.
    assert_eq!(forbidden_in("let t = std::time::SystemTime::now(); // not Date::now"), ["SystemTime"]);
    assert!(forbidden_in("/// reads no js_sys").is_empty());
}

/// The core's folders, in dependency order (ARCHITECTURE.md, "Code map"): each may import from itself and from
/// those before it, never from one after it. This is what keeps the compiled configuration out of the model.
const LAYERS: [&str; 7] = ["base", "model", "rules", "wire", "engine", "store", "writer"];

/// The core folders a line of code imports from or names (`crate::core::<folder>`), outside its comment.
fn layers_named(line: &str) -> Vec<&str> {
    let code = line.split("//").next().unwrap_or("");
    code.match_indices("crate::core::")
        .filter_map(|(i, m)| {
            let rest = &code[i + m.len()..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            Some(&rest[..end]).filter(|s| !s.is_empty())
        })
        .collect()
}

/// The import that breaks the order, if this line of `own`'s code has one.
fn upward_import<'l>(own: &str, line: &'l str) -> Option<&'l str> {
    let rank = |l: &str| LAYERS.iter().position(|x| *x == l);
    let own = rank(own)?;
    layers_named(line).into_iter().find(|l| rank(l).is_none_or(|r| r > own))
}

#[test]
fn each_core_folder_imports_only_from_those_before_it() {
    let mut found = Vec::new();
    let core = root().join("src/core");
    for layer in LAYERS {
        for file in rust_files(&core.join(layer)) {
            let text = fs::read_to_string(&file).expect("readable source");
            // Unit tests may build their inputs with any layer (a wire body parsed for a model test).
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, line) in code.lines().enumerate() {
                if let Some(to) = upward_import(layer, line) {
                    let at = file.strip_prefix(root()).unwrap_or(&file).display().to_string();
                    found.push(format!("{at}:{}: {layer} imports from {to}", n + 1));
                }
            }
        }
    }
    // Every folder of the core is a layer: a new folder must take its place in the order.
    for entry in fs::read_dir(&core).expect("src/core") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        if path.is_dir() && !LAYERS.contains(&name.as_str()) {
            found.push(format!("src/core/{name}: a folder that is not in LAYERS"));
        }
    }
    assert!(found.is_empty(), "the core's layers are out of order:\n{}", found.join("\n"));
}

#[test]
fn the_layer_check_can_fail() {
    assert_eq!(upward_import("model", "use crate::core::rules::Config;"), Some("rules"));
    assert_eq!(upward_import("engine", "use crate::core::store::encode;"), Some("store"));
    assert_eq!(upward_import("rules", "use crate::core::model::profile::Profile; // not crate::core::engine"), None);
    assert_eq!(upward_import("wire", "let x = crate::core::base::time::DAY;"), None);
    assert_eq!(upward_import("base", "use crate::core::nowhere::X;"), Some("nowhere"));
}

/// The edge's order (ARCHITECTURE.md, "The edge"): `error.rs` at the bottom names nothing of the edge; routes are
/// leaves (no file outside `routes/` but the router names a route, and no route names another); modules are named
/// by their path (no `#[path]` renames, no imports through `super::`).
fn edge_order_breaks(file: &str, code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let in_routes = file.starts_with("src/edge/routes/");
    for (n, line) in code.lines().enumerate() {
        let line_code = line.split("//").next().unwrap_or("");
        let at = format!("{file}:{}", n + 1);
        if line_code.contains("#[path") {
            found.push(format!("{at}: a #[path] rename"));
        }
        if line_code.contains("super::") && !line_code.contains("use super::*;") {
            found.push(format!("{at}: an import through super::"));
        }
        if file == "src/edge/error.rs" && line_code.contains("crate::edge::") {
            found.push(format!("{at}: error.rs names the edge"));
        }
        let names_route = line_code.contains("crate::edge::routes::");
        if names_route && in_routes && !file.ends_with("routes/mod.rs") {
            found.push(format!("{at}: a route imports a route"));
        }
        if names_route && !in_routes && file != "src/edge/mod.rs" {
            found.push(format!("{at}: a service imports a route"));
        }
    }
    found
}

#[test]
fn the_edge_keeps_its_order() {
    let mut found = Vec::new();
    for dir in ["src/edge", "src/core", "src/browser"] {
        for file in rust_files(&root().join(dir)) {
            let text = fs::read_to_string(&file).expect("readable source");
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let name = file.strip_prefix(root()).unwrap_or(&file).display().to_string();
            found.extend(edge_order_breaks(&name, code));
        }
    }
    assert!(found.is_empty(), "the edge is out of order:\n{}", found.join("\n"));
}

#[test]
fn the_edge_order_check_can_fail() {
    assert_eq!(edge_order_breaks("src/edge/error.rs", "use crate::edge::kv;").len(), 1);
    assert_eq!(edge_order_breaks("src/edge/routes/a.rs", "use crate::edge::routes::b::f;").len(), 1);
    assert_eq!(edge_order_breaks("src/edge/kv.rs", "use crate::edge::routes::b::f;").len(), 1);
    assert_eq!(edge_order_breaks("src/edge/kv.rs", "use super::{now, signals};").len(), 1);
    assert_eq!(edge_order_breaks("src/edge/objects/mod.rs", "#[path = \"x.rs\"]").len(), 1);
    assert!(edge_order_breaks("src/edge/mod.rs", "use crate::edge::routes::decide::decide_get;").is_empty());
    assert!(edge_order_breaks("src/edge/kv.rs", "// not crate::edge::routes::x").is_empty());
}

/// The edge's folders whose import graph is checked for circles: all of them (issue 27 put the edge in order:
/// `error` at the bottom, `auth` apart from `http`, routes as leaves).
const EDGE_FOLDERS_CHECKED: [&str; 3] = ["src/edge", "src/edge/routes", "src/edge/objects"];

/// The Rust paths a piece of code names that start at `crate`, `super` or `self`, each expanded out of its
/// `use` tree (`use crate::a::{b::C, d}` names `crate::a::b::C` and `crate::a::d`).
fn paths_named(code: &str) -> Vec<Vec<String>> {
    // Tokens: identifiers, `::`, and single punctuation characters; whitespace dropped.
    let mut tokens: Vec<String> = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".into());
            i += 2;
        } else {
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
            i += 1;
        }
    }
    // One use tree (or a plain path) after `prefix`, from token `at`; returns where it ended.
    fn tree(tokens: &[String], mut at: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
        let ident = |t: &str| t.chars().all(|c| c.is_alphanumeric() || c == '_');
        let mut path = prefix;
        match tokens.get(at) {
            Some(t) if t == "{" => {
                at += 1;
                while tokens.get(at).is_some_and(|t| t != "}") {
                    at = tree(tokens, at, path.clone(), out);
                    if tokens.get(at).is_some_and(|t| t == ",") {
                        at += 1;
                    } else {
                        break;
                    }
                }
                return at + 1;
            }
            Some(t) if t == "self" && !path.is_empty() => at += 1,
            Some(t) if ident(t) => {
                path.push(t.clone());
                at += 1;
            }
            _ => return at,
        }
        while tokens.get(at).is_some_and(|t| t == "::") {
            match tokens.get(at + 1) {
                Some(t) if t == "{" => return tree(tokens, at + 1, path, out),
                Some(t) if ident(t) => {
                    path.push(t.clone());
                    at += 2;
                }
                _ => {
                    at += 1;
                    break;
                }
            }
        }
        out.push(path);
        at
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        let starts = ["crate", "super", "self"].contains(&tokens[at].as_str())
            && tokens.get(at + 1).is_some_and(|t| t == "::")
            && (at == 0 || tokens[at - 1] != "::");
        if starts {
            at = tree(&tokens, at, Vec::new(), &mut out).max(at + 1);
        } else {
            at += 1;
        }
    }
    out
}

/// The module path (from the crate root) of a source file: `src/core/rules/mod.rs` is `core::rules`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root().join("src")).unwrap_or(file);
    let mut segments: Vec<String> =
        rel.iter().map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if segments.last().is_some_and(|s| s == "mod" || s == "lib") {
        segments.pop();
    }
    segments
}

/// A path named in the module `from`, from the crate root: `super` and `self` resolved.
fn absolute(from: &[String], path: &[String]) -> Vec<String> {
    // `from` is a module (`a::b` for `a/b.rs`, `a` for `a/mod.rs`): `self` is that module, `super` its parent.
    let mut out: Vec<String> = Vec::new();
    for (n, s) in path.iter().enumerate() {
        match s.as_str() {
            "crate" if n == 0 => {}
            "self" if n == 0 => out = from.to_vec(),
            "super" if n == 0 => out = from[..from.len().saturating_sub(1)].to_vec(),
            "super" => {
                out.pop();
            }
            _ => out.push(s.clone()),
        }
    }
    out
}

/// The import graph of one folder of `src`: its files (by stem; `mod.rs` and `lib.rs` are the folder's own
/// module) and its subfolders (each one node, `name/`, for every file beneath it). A node imports another when
/// its code outside `#[cfg(test)]` names a path into it (`crate::…`, `super::…`, `self::…`); a folder's own
/// `mod` declarations are its table of contents, not imports.
fn import_graph(folder: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let prefix = module_of(&folder.join("mod.rs"));
    let mut files = BTreeSet::new();
    let mut subfolders = BTreeSet::new();
    for entry in fs::read_dir(folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display())) {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        if path.is_dir() {
            subfolders.insert(name);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            files.insert(stem.to_string());
        }
    }
    let own = if files.contains("lib") { "lib" } else { "mod" };
    let node_of = |module: &[String]| -> Option<String> {
        let rest = module.strip_prefix(prefix.as_slice())?;
        Some(match rest.first() {
            Some(x) if subfolders.contains(x) => format!("{x}/"),
            Some(x) if files.contains(x) && x != "mod" && x != "lib" => x.clone(),
            _ => own.to_string(),
        })
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(folder) {
        let module = module_of(&file);
        let Some(from) = node_of(&module) else { continue };
        let text = fs::read_to_string(&file).expect("readable source");
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or("")
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .filter(|l| !l.trim_start().starts_with("pub mod ") && !l.trim_start().starts_with("mod "))
            .collect::<Vec<_>>()
            .join("\n");
        let edges = graph.entry(from.clone()).or_default();
        for path in paths_named(&code) {
            if let Some(to) = node_of(&absolute(&module, &path)) {
                if to != from {
                    edges.insert(to);
                }
            }
        }
    }
    graph
}

/// The circles of a graph, as the nodes in order, each starting at its smallest node: at least one through every
/// group of nodes that reach each other (a depth-first walk's edges back into its own path).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn walk<'g>(
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        node: &'g str,
        stack: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
        found: &mut BTreeSet<Vec<String>>,
    ) {
        if let Some(at) = stack.iter().position(|n| *n == node) {
            let mut circle: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
            let least = circle.iter().enumerate().min_by_key(|(_, n)| n.as_str()).map_or(0, |(i, _)| i);
            circle.rotate_left(least);
            found.insert(circle);
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            walk(graph, next, stack, done, found);
        }
        stack.pop();
        done.insert(node);
    }
    let mut found = BTreeSet::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        walk(graph, node, &mut Vec::new(), &mut done, &mut found);
    }
    found.into_iter().collect()
}

#[test]
fn no_folder_of_src_has_an_import_circle() {
    let mut folders = vec![root().join("src")];
    let mut i = 0;
    while i < folders.len() {
        for entry in fs::read_dir(&folders[i]).expect("a folder of src") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                folders.push(path);
            }
        }
        i += 1;
    }
    let mut found = Vec::new();
    for folder in folders {
        let name = folder.strip_prefix(root()).unwrap_or(&folder).display().to_string();
        if name.starts_with("src/edge") && !EDGE_FOLDERS_CHECKED.contains(&name.as_str()) {
            continue;
        }
        for circle in circles(&import_graph(&folder)) {
            found.push(format!("{name}: {} -> {}", circle.join(" -> "), circle[0]));
        }
    }
    assert!(found.is_empty(), "files that import each other, in a circle:\n{}", found.join("\n"));
}

#[test]
fn the_circle_check_can_fail() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    let names = |cs: Vec<Vec<String>>| cs.into_iter().map(|c| c.join(" ")).collect::<Vec<_>>();
    assert_eq!(names(circles(&graph(&[("decide", "journeys"), ("journeys", "decide")]))), ["decide journeys"]);
    assert_eq!(names(circles(&graph(&[("b", "c"), ("c", "a"), ("a", "b"), ("c", "d")]))), ["a b c"]);
    assert!(circles(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty(), "a diamond is no circle");
    // The paths a file names, out of its `use` trees and its code, resolved from where it stands.
    let code = "use crate::core::engine::{evaluate::{scores_of, Facts}, pressure::{self, over_budget}};\n\
                use super::merge::plan; let x = crate::core::rules::Config::default(); fn f(x: super::Y) {}";
    let from: Vec<String> = ["core", "engine", "decide"].map(String::from).to_vec();
    let named: Vec<String> = paths_named(code).iter().map(|p| absolute(&from, p).join("::")).collect();
    assert_eq!(
        named,
        [
            "core::engine::evaluate::scores_of",
            "core::engine::evaluate::Facts",
            "core::engine::pressure",
            "core::engine::pressure::over_budget",
            "core::engine::merge::plan",
            "core::rules::Config::default",
            "core::engine::Y",
        ]
    );
}

/// The most lines a source file may have before its `#[cfg(test)]` module: past that, a file holds more than one
/// idea and is split along its seams (issue 27).
const MAX_LINES: usize = 700;

/// Files that may be longer for now: none.
const LONG_FOR_NOW: [&str; 0] = [];

/// The lines of a source text before its `#[cfg(test)]` module (all of them when it has none).
fn lines_before_tests(text: &str) -> usize {
    text.lines().take_while(|l| !l.contains("#[cfg(test)]")).count()
}

#[test]
fn no_source_file_is_longer_than_700_lines_before_its_tests() {
    let mut found = Vec::new();
    for file in rust_files(&root().join("src")) {
        let at = file.strip_prefix(root()).unwrap_or(&file).display().to_string();
        let n = lines_before_tests(&fs::read_to_string(&file).expect("readable source"));
        if n > MAX_LINES && !LONG_FOR_NOW.contains(&at.as_str()) {
            found.push(format!("{at}: {n} lines"));
        }
    }
    assert!(found.is_empty(), "files longer than {MAX_LINES} lines before their tests:\n{}", found.join("\n"));
}

#[test]
fn the_length_check_can_fail() {
    let long = "fn f() {}\n".repeat(MAX_LINES + 1);
    assert_eq!(lines_before_tests(&long), MAX_LINES + 1);
    assert_eq!(lines_before_tests(&format!("//! x\nfn f() {{}}\n#[cfg(test)]\n{long}")), 2);
}

/// `GET /healthz` is answered by the JavaScript shell (`js/edge.js`) with package.json's version, and was answered
/// by the Rust Worker with Cargo.toml's: the two say the same version.
#[test]
fn the_package_and_the_crate_say_the_same_version() {
    let field = |file: &str, prefix: &str| -> String {
        let text = fs::read_to_string(root().join(file)).expect("readable manifest");
        let line =
            text.lines().find(|l| l.trim_start().starts_with(prefix)).unwrap_or_else(|| panic!("{file}: no {prefix}"));
        line.split('"').nth(if prefix.starts_with('"') { 3 } else { 1 }).expect("a quoted version").to_string()
    };
    assert_eq!(field("package.json", "\"version\""), field("Cargo.toml", "version ="), "package.json and Cargo.toml");
    assert_eq!(field("package.json", "\"version\""), env!("CARGO_PKG_VERSION"));
}
