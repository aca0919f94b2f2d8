//! The layering the README's "Layout" promises, checked on the source: routes / web / cli →
//! app → (domain, store) → db; the store never names an HTTP type; nothing below the edge
//! imports a route; and no two modules import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every module of the crate (`app::payouts`) with its source, comment lines and unit tests
/// left out.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let name = rel.to_string_lossy().replace('/', "::");
            let name = name.strip_suffix("::mod").unwrap_or(&name).to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            let code: Vec<&str> = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
            (name, code.join("\n"))
        })
        .collect()
}

/// The modules `code` names through `crate::…` paths (`crate::store::{audit, payouts}` names
/// both), resolved to the longest known module.
fn imports(code: &str, known: &BTreeMap<String, String>) -> BTreeSet<String> {
    let resolve = |path: &str| {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|m| known.contains_key(m))
    };
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let path: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == ':').collect();
        let path = path.trim_end_matches(':');
        found.extend(resolve(path));
        if rest[path.len()..].starts_with("::{") {
            let group = &rest[path.len() + 3..rest[path.len()..].find('}').map_or(rest.len(), |e| path.len() + e)];
            for item in group.split(',') {
                let item = item.trim().split("::").next().unwrap_or("");
                if !item.is_empty() && item != "self" {
                    found.extend(resolve(&format!("{path}::{item}")));
                }
            }
        }
    }
    found
}

#[test]
fn no_two_modules_import_each_other() {
    let mods = modules();
    let graph: BTreeMap<&String, BTreeSet<String>> = mods.iter().map(|(m, code)| (m, imports(code, &mods))).collect();
    let mut cycles = Vec::new();
    for (a, deps) in &graph {
        for b in deps {
            let nested = b.starts_with(&format!("{a}::")) || a.starts_with(&format!("{b}::"));
            if *a < b && !nested && graph.get(b).is_some_and(|d| d.contains(*a)) {
                cycles.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(cycles.is_empty(), "modules importing each other: {cycles:?}");
}

#[test]
fn lower_layers_never_reach_up() {
    let mods = modules();
    let mut wrong = Vec::new();
    for (m, code) in &mods {
        let below_edge =
            ["app", "store", "domain", "db", "email"].iter().any(|l| m == l || m.starts_with(&format!("{l}::")));
        if below_edge && (code.contains("crate::routes") || code.contains("crate::web")) {
            wrong.push(format!("{m} imports a route or page"));
        }
        let below_app = ["store", "domain", "db"].iter().any(|l| m == l || m.starts_with(&format!("{l}::")));
        if below_app && (code.contains("ApiError") || code.contains("actix_web") || code.contains("crate::app::")) {
            wrong.push(format!("{m} names an HTTP type or a use case"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Every stored date or timestamp a row struct loads is read through `db::time`
/// (`#[diesel(deserialize_as = …)]` right before the field): diesel's own SQLite parser
/// interprets a format string for every value (PROFILE part 14), and a new row struct or field
/// should not quietly bring it back.
#[test]
fn row_structs_read_stored_dates_through_db_time() {
    let mut missing = Vec::new();
    for (m, code) in modules() {
        let (mut in_row, mut previous) = (false, "");
        for line in code.lines() {
            let t = line.trim();
            if t.starts_with("#[derive(") {
                in_row = t.contains("Queryable");
            } else if t == "}" {
                in_row = false;
            } else if in_row && t.starts_with("pub ") && t.contains("NaiveDate") && !previous.contains("deserialize_as")
            {
                missing.push(format!("{m}: {t}"));
            }
            previous = t;
        }
    }
    assert!(missing.is_empty(), "read without db::time: {missing:#?}");
}
