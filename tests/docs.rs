//! Documentation that is generated must match what generates it.

mod common;

#[test]
fn functions_reference_is_current() {
    let path = common::root().join("docs/functions.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = skladsync_engine::funcs::reference_markdown();
    assert!(
        committed == generated,
        "docs/functions.md is out of date; regenerate it with `cargo run -q -- functions > docs/functions.md`"
    );
}

#[test]
fn every_builtin_is_in_the_language_reference_or_functions_page() {
    let functions =
        std::fs::read_to_string(common::root().join("docs/functions.md")).unwrap_or_default();
    for b in skladsync_engine::funcs::all() {
        assert!(
            functions.contains(&format!("### `{}", b.name)),
            "{} is not documented",
            b.name
        );
    }
}
