//! Every documented example of every built-in runs here.

use crate::world::RecordedWorld;
use crate::Expression;

fn example_world() -> RecordedWorld {
    RecordedWorld::from_yaml(
        "entities:\n  shop.product:\n    - {id: 1, sku: A-1, name: Pen}\n    - {id: 2, sku: B-2, name: Ink}\n\
         links:\n  - {kind: product, shop: 1, warehouse: p-1}\n\
         reference:\n  units: [pcs, kg]\n  colours: {red: '#f00'}\n",
    )
    .expect("the example world is valid")
}

/// 2024-05-01 10:00:00.
const NOW: i64 = 1_714_557_600_000;

#[test]
fn every_example_holds() {
    let world = example_world();
    let mut failures = Vec::new();
    for b in super::all() {
        for (expr, want) in b.examples {
            let got = Expression::compile(expr)
                .map_err(|d| d.render(false))
                .and_then(|e| e.eval(&world, Some(NOW)).map_err(|e| e.to_string()));
            let expected = Expression::compile(want)
                .map_err(|d| d.render(false))
                .and_then(|e| e.eval(&world, Some(NOW)).map_err(|e| e.to_string()));
            match (got, expected) {
                (Ok(g), Ok(w)) if g == w => {}
                (g, w) => failures.push(format!("{}: {expr}\n   got {g:?}\n  want {w:?}", b.name)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "examples that do not hold:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_builtin_is_documented_with_an_example() {
    for b in super::all() {
        assert!(!b.doc.is_empty(), "{} has no doc", b.name);
        assert!(!b.examples.is_empty(), "{} has no example", b.name);
        assert!(
            b.signature.starts_with(b.name),
            "{}: signature {}",
            b.name,
            b.signature
        );
    }
}

#[test]
fn names_are_unique() {
    let mut names: Vec<&str> = super::all().iter().map(|b| b.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len());
}

#[test]
fn merge_and_compact_change_in_place_only_what_nothing_else_holds() {
    let world = example_world();
    let eval = |text: &str| {
        Expression::compile(text)
            .map_err(|d| d.render(false))
            .and_then(|e| e.eval(&world, Some(NOW)).map_err(|e| e.to_string()))
    };
    // Objects and lists built in the call (nothing else holds them): changed in place.
    assert_eq!(
        eval("map([1], i => [compact(merge({a: i, b: null}, {c: i, a: 2}, null)), compact([i, null, 2])])"),
        eval("[[{a: 2, c: 1}, [1, 2]]]")
    );
    // Held by a lambda's parameter and by the list: copied, the original unchanged.
    assert_eq!(
        eval("map([{x: 1, n: null}], o => [merge(o, {y: 2}), compact(o), o, compact([o, null])])"),
        eval("[[{x: 1, n: null, y: 2}, {x: 1}, {x: 1, n: null}, [{x: 1, n: null}]]]")
    );
    assert_eq!(
        eval("map([1], i => merge(null, {a: i}, null))"),
        eval("[{a: 1}]")
    );
    assert_eq!(eval("map([1], i => merge(null, null))"), eval("[{}]"));
    let bad = eval("map([1], i => merge({a: i}, 3))").unwrap_err();
    assert!(
        bad.contains("merge() needs an object, got number 3"),
        "{bad}"
    );
    let bad = eval("map([1], i => compact(i))").unwrap_err();
    assert!(bad.contains("compact() needs an object or a list"), "{bad}");
}
