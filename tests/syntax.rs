//! Expression syntax cases: every `tests/syntax/*.txt` is one expression. Files named
//! `err_*` must fail to parse; the rest must parse. Each gives one snapshot: the fully
//! parenthesised tree, or the error with a caret.

mod common;

use skladsync_engine::syntax::parse;

#[test]
fn syntax_cases() {
    let dir = common::root().join("tests/syntax");
    let files = common::files(&dir, &["txt"]);
    assert!(
        files.len() >= 20,
        "expected the syntax cases in {}",
        dir.display()
    );
    for file in files {
        let name = common::case_name(&dir, &file);
        let text = std::fs::read_to_string(&file).expect("readable case");
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let rendered = match parse(text) {
            Ok(ast) => {
                assert!(
                    !name.starts_with("err_"),
                    "{name} should fail to parse but gave {ast}"
                );
                format!("{text}\n---\n{ast}\n")
            }
            Err(e) => {
                assert!(
                    name.starts_with("err_"),
                    "{name} should parse but failed: {e}"
                );
                let start = e.span.start as usize;
                let caret_col = text[..start.min(text.len())].chars().count();
                let line_start = text[..start.min(text.len())]
                    .rfind('\n')
                    .map_or(0, |i| i + 1);
                let col = text[line_start..start.min(text.len())].chars().count();
                let _ = caret_col;
                let line = text[line_start..].lines().next().unwrap_or("");
                format!(
                    "{text}\n---\nerror: {}\n{line}\n{}^\n",
                    e.message,
                    " ".repeat(col)
                )
            }
        };
        insta::with_settings!({
            snapshot_path => "../snapshots/syntax",
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, rendered);
        });
    }
}
