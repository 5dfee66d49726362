//! `ARCHITECTURE.md` checked against the code, so that the map stays true as the code
//! moves: every source file of every crate is in the code map and every file the map names
//! exists; each crate depends only on the crates in its "may use" column (any may use
//! `chronicle-testkit` in its tests); and each route's path literal is written once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The checkout's root: read at run time (cargo and nextest set it), so that a target
/// directory shared by two checkouts checks the one being tested.
fn root() -> PathBuf {
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    Path::new(&manifest)
        .parent()
        .expect("testkit sits in the workspace")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn toml_of(path: &Path) -> toml::Table {
    read(path)
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The workspace's members, as folders.
fn members(root: &Path) -> Vec<String> {
    let manifest = toml_of(&root.join("Cargo.toml"));
    manifest["workspace"]["members"]
        .as_array()
        .expect("workspace.members is a list")
        .iter()
        .map(|m| m.as_str().expect("a member is a folder").to_owned())
        .collect()
}

/// Every span between backticks in `text`.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// One row of the code map's crate table.
struct Row {
    krate: String,
    folder: String,
    may_use: BTreeSet<String>,
}

/// The crate table: the rows under the `| crate | folder | may use |` header.
fn crate_table(architecture: &str) -> Vec<Row> {
    let mut lines = architecture
        .lines()
        .skip_while(|l| !l.replace(' ', "").starts_with("|crate|folder|mayuse|"))
        .skip(2);
    let mut rows = Vec::new();
    for line in lines.by_ref() {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
        assert_eq!(cells.len(), 3, "a crate row has three cells: {line}");
        let one = |cell: &str| {
            let q = quoted(cell);
            assert_eq!(q.len(), 1, "one name in backticks: {cell}");
            q[0].to_owned()
        };
        rows.push(Row {
            krate: one(cells[0]),
            folder: one(cells[1]).trim_end_matches('/').to_owned(),
            may_use: quoted(cells[2]).into_iter().map(str::to_owned).collect(),
        });
    }
    assert!(!rows.is_empty(), "ARCHITECTURE.md has the crate table");
    rows
}

/// The `chronicle-*` crates a manifest names in one dependency table.
fn chronicle_deps(manifest: &toml::Table, table: &str) -> BTreeSet<String> {
    manifest
        .get(table)
        .and_then(|t| t.as_table())
        .map(|t| {
            t.keys()
                .filter(|k| k.starts_with("chronicle-"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Every `.rs` file under `dir`, as a path from the root.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(root, &path, out);
            }
        } else if name.ends_with(".rs") {
            let relative = path.strip_prefix(root).expect("under the root");
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

#[test]
fn every_crate_depends_only_on_what_its_row_allows() {
    let root = root();
    let rows = crate_table(&read(&root.join("ARCHITECTURE.md")));
    let members = members(&root);
    let by_folder: BTreeMap<&str, &Row> = rows.iter().map(|r| (r.folder.as_str(), r)).collect();
    let mut problems = Vec::new();
    for row in &rows {
        if !members.contains(&row.folder) {
            problems.push(format!(
                "the map has `{}/`, the workspace does not",
                row.folder
            ));
        }
    }
    for member in &members {
        let Some(row) = by_folder.get(member.as_str()) else {
            problems.push(format!("`{member}/` has no row in the crate table"));
            continue;
        };
        let manifest = toml_of(&root.join(member).join("Cargo.toml"));
        let name = manifest["package"]["name"].as_str().unwrap_or("");
        if name != row.krate {
            problems.push(format!(
                "`{member}/` is `{name}`, the map says `{}`",
                row.krate
            ));
        }
        for table in ["dependencies", "build-dependencies"] {
            for dep in chronicle_deps(&manifest, table) {
                if !row.may_use.contains(&dep) {
                    problems.push(format!(
                        "`{name}` uses `{dep}` ([{table}]), outside its \"may use\" column"
                    ));
                }
            }
        }
        for dep in chronicle_deps(&manifest, "dev-dependencies") {
            if dep != "chronicle-testkit" && !row.may_use.contains(&dep) {
                problems.push(format!(
                    "`{name}` uses `{dep}` in its tests, outside its \"may use\" column"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_source_file_is_in_the_code_map_and_every_file_it_names_exists() {
    let root = root();
    let architecture = read(&root.join("ARCHITECTURE.md"));
    let named: BTreeSet<&str> = quoted(&architecture)
        .into_iter()
        // `<resource>.rs` and the like stand for any file of a kind.
        .filter(|q| q.ends_with(".rs") && q.contains('/') && !q.contains('<'))
        .collect();
    let mut files = Vec::new();
    for member in members(&root) {
        rust_files(&root, &root.join(&member), &mut files);
    }
    let mut problems: Vec<String> = files
        .iter()
        .filter(|f| !named.contains(f.as_str()))
        .map(|f| format!("`{f}` is not in the code map"))
        .collect();
    problems.extend(
        named
            .iter()
            .filter(|f| !root.join(f).is_file())
            .map(|f| format!("the code map names `{f}`, which does not exist")),
    );
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn each_route_path_is_written_once() {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root, &root.join("api/src"), &mut files);
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        for (n, line) in read(&root.join(file)).lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for literal in line.split('"').skip(1).step_by(2) {
                if literal.starts_with("/v1/") || literal.starts_with("/health/") {
                    seen.entry(literal.to_owned())
                        .or_default()
                        .push(format!("{file}:{}", n + 1));
                }
            }
        }
    }
    assert!(seen.len() > 40, "the routes are found: {seen:?}");
    let twice: Vec<String> = seen
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(path, at)| format!("{path} at {}", at.join(", ")))
        .collect();
    assert!(
        twice.is_empty(),
        "a path written more than once:\n{}",
        twice.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_check() {
    // A map without a file or with a stale one, and a crate table with a forbidden edge,
    // are caught by the same helpers the checks above use.
    let map = "| crate | folder | may use |\n|---|---|---|\n| `a` | `a/` | — |\n| `b` | `b/` | `a` |\n\nsee `b/src/lib.rs`";
    let rows = crate_table(map);
    assert_eq!(rows.len(), 2);
    assert!(rows[0].may_use.is_empty());
    assert_eq!(rows[1].may_use, BTreeSet::from(["a".to_owned()]));
    assert_eq!(quoted(map).last(), Some(&"b/src/lib.rs"));
    let manifest: toml::Table = "[dependencies]\nchronicle-x = { path = \"x\" }\nserde = \"1\""
        .parse()
        .unwrap();
    assert_eq!(
        chronicle_deps(&manifest, "dependencies"),
        BTreeSet::from(["chronicle-x".to_owned()])
    );
}
