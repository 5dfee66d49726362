//! The OpenAPI document is pinned: any change to what `/openapi.json` says shows here as a
//! diff against `tests/openapi.golden.json`, made on purpose (run with
//! `CHRONICLE_BLESS=1` to accept it) or not at all.

#[test]
fn the_openapi_document_is_the_pinned_one() {
    let doc =
        serde_json::to_string_pretty(&chronicle_api::http::openapi::document()).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi.golden.json");
    if std::env::var_os("CHRONICLE_BLESS").is_some() {
        std::fs::write(&path, &doc).unwrap();
        return;
    }
    let pinned = std::fs::read_to_string(&path).unwrap_or_default();
    if doc != pinned {
        let first = doc
            .lines()
            .zip(pinned.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(doc.lines().count().min(pinned.lines().count()));
        panic!(
            "/openapi.json differs from {} from line {}: {:?} (now) vs {:?} (pinned); \
             run with CHRONICLE_BLESS=1 if the change is meant",
            path.display(),
            first + 1,
            doc.lines().nth(first),
            pinned.lines().nth(first)
        );
    }
}
