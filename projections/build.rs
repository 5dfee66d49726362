//! Embeds every `migrations/NNNN_name.sql` into the binary, in order, so that
//! `chronicle migrate` needs no files beside it.

use std::fmt::Write;
use std::path::Path;

fn main() {
    // Read when the script runs, not baked in when it is compiled: a target directory
    // shared by two checkouts must embed each checkout's own migrations.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("migrations/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let mut out = String::from("&[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        let (num, _) = name
            .split_once('_')
            .unwrap_or_else(|| panic!("{name}: migrations are named NNNN_what.sql"));
        let version: i64 = num
            .parse()
            .unwrap_or_else(|_| panic!("{name}: migrations are named NNNN_what.sql"));
        writeln!(
            out,
            "    crate::migrate::Migration {{ version: {version}, name: {name:?}, sql: include_str!({:?}) }},",
            f.canonicalize().unwrap().display()
        )
        .unwrap();
    }
    out.push(']');
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("migrations.rs");
    std::fs::write(dest, out).unwrap();
}
