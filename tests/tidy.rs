//! Conventions that matter, as a test rather than prose (after rust-analyzer's `xtask/src/tidy.rs`): every source
//! file says what it is for in a `//!` line, and the core never reaches for I/O, a clock or a random source.

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
    out.sort();
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
