//! A call of a user function whose arguments are the same in every rule of an evaluation
//! (globals, keys below them, literals: `c2m_lines(order)`) is computed once per event and
//! its result shared by the rules, unless it reads the world and the plan changed since.

use std::cell::Cell;

use skladsync_engine::value::Map;
use skladsync_engine::{Action, Event, RecordedWorld, RuleSet, Value, World, WorldError};

/// A recorded world that counts the lookups asked of it.
struct Counting {
    inner: RecordedWorld,
    finds: Cell<u32>,
}

impl World for Counting {
    fn find(&self, system: &str, entity: &str, filter: &Map) -> Result<Vec<Value>, WorldError> {
        self.finds.set(self.finds.get() + 1);
        self.inner.find(system, entity, filter)
    }
    fn get(&self, system: &str, entity: &str, id: &Value) -> Result<Value, WorldError> {
        self.inner.get(system, entity, id)
    }
    fn linked(&self, kind: &str, system: &str, id: &Value) -> Result<Value, WorldError> {
        self.inner.linked(kind, system, id)
    }
    fn reference(&self, name: &str) -> Result<Value, WorldError> {
        self.inner.reference(name)
    }
}

fn world() -> Counting {
    let inner = RecordedWorld::from_yaml(
        "entities:\n  shop.item:\n    - {id: 1, code: A, name: Pen}\n    - {id: 2, code: B, name: Ink}\n",
    )
    .expect("world");
    Counting {
        inner,
        finds: Cell::new(0),
    }
}

fn rules(text: &str) -> RuleSet {
    let (set, _) = RuleSet::from_texts(&[("shared.yaml".to_owned(), text.to_owned())], None)
        .unwrap_or_else(|d| panic!("the rules load: {d:?}"));
    set
}

fn event(code: &str) -> Event {
    let doc: Value =
        serde_json::from_str(&format!(r#"{{"event": "e", "code": "{code}"}}"#)).expect("json");
    Event::from_document(&doc).expect("event")
}

/// The texts of the plan's journal entries, in order.
fn journal(set: &RuleSet, ev: &Event, world: &dyn World) -> Vec<String> {
    let plan = set.evaluate(ev, world).expect("evaluates");
    plan.effects
        .iter()
        .filter_map(|e| match &e.action {
            Action::Journal { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

const READ_TWICE: &str = r#"
events:
  e:
    fields: {code: an item code}
functions:
  item_of(code): 'first(lookup("shop", "item", {code: code}))'
rules:
  - id: first.reader
    on: e
    let:
      item: item_of(code)
    do:
      - journal: {code: SEEN, level: info, text: 'item.name'}
  - id: second.reader
    on: e
    let:
      item: item_of(code)
      other: item_of("B")
    do:
      - journal: {code: SEEN, level: info, text: 'item.name + " " + other.name'}
"#;

#[test]
fn an_event_level_call_is_computed_once_for_all_rules() {
    let set = rules(READ_TWICE);
    let w = world();
    assert_eq!(journal(&set, &event("A"), &w), ["Pen", "Pen Ink"]);
    // `item_of(code)` in both rules, `item_of("B")` once: two lookups, not three.
    assert_eq!(w.finds.get(), 2);
    // Another evaluation starts afresh.
    assert_eq!(journal(&set, &event("B"), &w), ["Ink", "Ink Ink"]);
    assert_eq!(w.finds.get(), 3);
}

const CREATE_BETWEEN: &str = r#"
events:
  e:
    fields: {code: an item code}
functions:
  item_of(code): 'first(lookup("shop", "item", {code: code}))'
  label(code): '"item " + code'
rules:
  - id: first.reader
    on: e
    let:
      item: item_of(code)
    do:
      - journal: {code: SEEN, level: info, text: 'label(code) + ": " + (item.name ?? "none")'}
      - create: shop.item
        body: {code: code, name: '"Made"'}
  - id: second.reader
    on: e
    let:
      item: item_of(code)
    do:
      - journal: {code: SEEN, level: info, text: 'label(code) + ": " + (item.name ?? "none")'}
"#;

#[test]
fn a_call_that_reads_the_world_is_computed_again_once_the_plan_changed() {
    let set = rules(CREATE_BETWEEN);
    let w = world();
    // The second rule sees the item the first one created, as lookups always did.
    assert_eq!(
        journal(&set, &event("C"), &w),
        ["item C: none", "item C: Made"]
    );
    assert_eq!(w.finds.get(), 2);
}
