//! `skladsync fmt` and `skladsync schema`, driven through the real binary: idempotence on
//! every rule file of the repository, `--check`, comments kept, and the shipped JSON
//! Schemas validating every rule and settings file.

mod cli_support;

use std::path::{Path, PathBuf};

use cli_support::{copy_dir, root, skladsync, snapshot};

/// Every rule file of the repository's rule sets (the default one and the examples).
fn rule_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root().join("rules")];
    for e in std::fs::read_dir(root().join("tests/examples"))
        .expect("examples")
        .flatten()
    {
        dirs.push(e.path().join("rules"));
    }
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                dirs.push(p);
            } else if name.ends_with(".yaml") && !name.starts_with("settings") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).expect("read")
}

#[test]
fn fmt_is_idempotent_on_every_rule_file_and_keeps_plans() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&root().join("rules"), &dir.path().join("rules"));
    copy_dir(&dir.path().join("rules"), &dir.path().join("original"));
    copy_dir(&root().join("tests/cases"), &dir.path().join("cases"));
    // The fragments the cases include (`../../worlds/…`).
    copy_dir(&root().join("tests/worlds"), &dir.path().join("worlds"));
    let (code, _, stderr) = skladsync(&["fmt", "rules"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = skladsync(&["fmt", "--check", "rules"], dir.path());
    assert_eq!((code, stdout.as_str()), (0, ""), "{stderr}");
    // The formatted rules are the same rules: every case plans the same.
    let (code, stdout, stderr) = skladsync(
        &[
            "diff", "--base", "original", "--rules", "rules", "--corpus", "cases",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");

    // Each file on its own, the examples' too: formatting twice changes nothing more.
    for (i, file) in rule_files().iter().enumerate() {
        let copy = dir.path().join(format!("one{i}.yaml"));
        std::fs::copy(file, &copy).expect("copy");
        let name = copy
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (code, _, stderr) = skladsync(&["fmt", &name], dir.path());
        assert_eq!(code, 0, "{}: {stderr}", file.display());
        let once = read(&copy);
        let (code, stdout, _) = skladsync(&["fmt", "--check", &name], dir.path());
        assert_eq!((code, stdout.as_str()), (0, ""), "{}", file.display());
        assert_eq!(read(&copy), once);
        let comments = |t: &str| {
            t.lines()
                .filter(|l| l.trim_start().starts_with('#'))
                .count()
        };
        assert!(
            comments(&once) >= comments(&read(file)),
            "{}: a comment line went missing",
            file.display()
        );
    }
}

const MESSY: &str = r#"# yaml-language-server: $schema=../schema/rules.schema.json
# Orders.

rules:
# The upload.
- on: order.placed   # the event
  do:
  - body: {total: "order.total*100", name: "{{ order.number }}"}
    create: wh.order # the copy
  when:
      # must have items
      - not empty( order.items )
      - check: order.total>0
        journal: {text: '"empty"', code: EMPTY}
  id: order.copy
  let:
    b: a
    a: 'if order.x then [1,2] else {y: (1+2)*3}'
events:
  order.placed: {fields: {order: the order}}
# the end
"#;

const FORMATTED: &str = r#"# yaml-language-server: $schema=../schema/rules.schema.json
# Orders.

events:
  order.placed: {fields: {order: the order}}

rules:
  # The upload.
  - id: order.copy
    on: order.placed # the event
    let:
      b: a
      a: 'if order.x then [1, 2] else {y: (1 + 2) * 3}'
    when:
      # must have items
      - not empty(order.items)
      - check: order.total > 0
        journal: {code: EMPTY, text: '"empty"'}
    do:
      - create: wh.order # the copy
        body: {total: order.total * 100, name: "{{ order.number }}"}
# the end
"#;

#[test]
fn fmt_check_lists_unformatted_files_and_fmt_keeps_comments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("orders.yaml");
    std::fs::write(&file, MESSY).expect("write");
    let (code, stdout, stderr) = skladsync(&["fmt", "--check", "orders.yaml"], dir.path());
    assert_eq!(code, 1);
    assert_eq!(stdout, "orders.yaml\n");
    assert!(stderr.contains("1 file(s) not formatted"), "{stderr}");
    assert_eq!(read(&file), MESSY, "--check changes nothing");

    let (code, stdout, _) = skladsync(&["fmt", "orders.yaml"], dir.path());
    assert_eq!((code, stdout.as_str()), (0, "formatted orders.yaml\n"));
    assert_eq!(read(&file), FORMATTED);
    snapshot("fmt_formatted", &read(&file), dir.path());

    let (code, stdout, _) = skladsync(&["fmt", "--check", "orders.yaml"], dir.path());
    assert_eq!((code, stdout.as_str()), (0, ""));
}

#[test]
fn fmt_refuses_a_file_it_cannot_read_and_leaves_it_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    let text = "rules:\n  - id: x\n    on: e\n    when:\n      - 'a +'   # broken\n";
    std::fs::write(&file, text).expect("write");
    let (code, _, stderr) = skladsync(&["fmt", "bad.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.yaml: expression does not parse"),
        "{stderr}"
    );
    assert_eq!(read(&file), text);
}

fn validator(name: &str) -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(&read(&root().join("schema").join(name))).expect("schema json");
    jsonschema::validator_for(&schema).expect("a valid schema")
}

fn yaml(p: &Path) -> serde_json::Value {
    serde_yaml::from_str(&read(p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_shipped_schemas_are_current_and_validate_the_repositorys_files() {
    let (code, stdout, stderr) = skladsync(&["schema", "--check"], &root());
    assert_eq!(
        code, 0,
        "regenerate with `skladsync schema`: {stdout}{stderr}"
    );

    let rules = validator("rules.schema.json");
    let files = rule_files();
    assert!(files.len() > 3);
    for f in &files {
        let doc = yaml(f);
        let errors: Vec<String> = rules.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", f.display());
    }
    let bad = yaml(&root().join("tests/diagnostics/err_shape_unknown_key.yaml"));
    assert!(!rules.is_valid(&bad), "an unknown key is refused");

    let settings = validator("settings.schema.json");
    for name in ["settings.example.yaml", "settings.yaml"] {
        let p = root().join("rules").join(name);
        if p.is_file() {
            let doc = yaml(&p);
            let errors: Vec<String> = settings.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", p.display());
        }
    }
    // A misspelt setting and a value outside its listed alternatives are refused.
    let mut doc = yaml(&root().join("rules/settings.example.yaml"));
    doc["settings_tab"]["counterparty_sync_type"] = serde_json::json!("per_planet");
    assert!(!settings.is_valid(&doc));
    let mut doc = yaml(&root().join("rules/settings.example.yaml"));
    doc["crm_tab"]["auto_reserv"] = serde_json::json!(true);
    assert!(!settings.is_valid(&doc));

    // Every shipped case and shared fragment is a valid case file; a misspelt key is not.
    let cases = validator("case.schema.json");
    let mut files = Vec::new();
    for dir in ["tests/cases", "tests/worlds"] {
        let mut stack = vec![root().join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "yaml") {
                    files.push(p);
                }
            }
        }
    }
    assert!(files.len() > 200);
    for p in &files {
        let doc = yaml(p);
        let errors: Vec<String> = cases.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", p.display());
    }
    assert!(!cases.is_valid(&serde_json::json!({"event": {"event": "x"}, "wrold": {}})));
}

#[test]
fn schema_writes_every_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &root().join("tests/examples/shop/rules"),
        &dir.path().join("rules"),
    );
    std::fs::write(
        dir.path().join("rules/settings.example.yaml"),
        "# The base URL.\nbase: https://wh.example/api\n# Mode: fast | slow.\nmode: fast\n",
    )
    .expect("write");
    let (code, stdout, _) = skladsync(&["schema", "--out", "out"], dir.path());
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        stdout,
        "wrote out/rules.schema.json\nwrote out/settings.schema.json\nwrote out/case.schema.json\n"
    );
    let s: serde_json::Value =
        serde_json::from_str(&read(&dir.path().join("out/settings.schema.json"))).expect("json");
    assert_eq!(
        s["properties"]["mode"]["enum"],
        serde_json::json!(["fast", "slow"])
    );
    assert_eq!(s["properties"]["base"]["description"], "The base URL.");
    let (code, _, _) = skladsync(&["schema", "--out", "out", "--check"], dir.path());
    assert_eq!(code, 0);
    std::fs::write(dir.path().join("out/rules.schema.json"), "{}").expect("write");
    let (code, stdout, _) = skladsync(&["schema", "--out", "out", "--check"], dir.path());
    assert_eq!(
        (code, stdout.as_str()),
        (1, "out/rules.schema.json is not current\n")
    );
}

/// House rules of the repository: every shipped rule file is formatted and carries the
/// schema modeline that lets editors complete and validate it.
#[test]
fn the_shipped_rules_are_formatted_and_carry_their_schema_modeline() {
    let (code, out, err) = skladsync(&["fmt", "--check", "rules"], &root());
    assert_eq!(code, 0, "skladsync fmt --check rules:\n{out}{err}");
    let mut missing = Vec::new();
    for f in rule_files()
        .into_iter()
        .filter(|f| f.starts_with(root().join("rules")))
    {
        let text = read(&f);
        let head: Vec<&str> = text.lines().take(3).collect();
        if !head.iter().any(|l| {
            l.starts_with("# yaml-language-server: $schema=")
                && l.ends_with("schema/rules.schema.json")
        }) {
            missing.push(f.display().to_string());
        }
    }
    assert!(missing.is_empty(), "no schema modeline: {missing:?}");
}
