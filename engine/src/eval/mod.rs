//! Evaluation: an event, the settings and a world in, a [`Plan`] out. No I/O happens here;
//! everything the rules need to know about the systems comes through the [`World`].

mod effects;
mod expr;
#[cfg(test)]
mod fast_tests;
#[cfg(test)]
mod thread_tests;

#[cfg(test)]
thread_local! {
    /// Tests only: evaluations started on this thread use the general dispatcher instead
    /// of the ops ([`Ctx::unthreaded`]).
    pub(crate) static UNTHREADED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Tests only: how many times an op met a node of a shape it was not chosen for, on
    /// this thread.
    pub(crate) static MISMATCHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}
pub(crate) mod ops;

use std::fmt;
use std::sync::Arc;

use crate::compile::node::{CLambda, Lets, LocId};
use crate::compile::Program;
use crate::plan::{Effect, Plan};
use crate::trace::Trace;
use crate::value::{Str, Value};
use crate::world::World;

pub(crate) use effects::PlanBuilder;
pub(crate) use expr::{cond_for, op_for, view_for};

/// Default step budget of one evaluation of one event.
pub const DEFAULT_BUDGET: u64 = 20_000_000;

/// Default most effects one plan may have ([`EvalOptions::max_effects`]).
pub const DEFAULT_MAX_EFFECTS: usize = 10_000;

/// Default memory budget of one evaluation of one event, in bytes
/// ([`EvalOptions::max_bytes`]): 128 MiB. The recorded stock pass of 10 000 report rows
/// counts about 25 MB, an order of 200 lines well under 1 MB.
pub const DEFAULT_MAX_BYTES: u64 = 128 * 1024 * 1024;

/// How deep lets and functions may nest: a `let` whose value needs another `let` (or calls a
/// function) whose value needs another … The evaluator recurses once per level (and each
/// expression is at most `syntax::lower::MAX_DEPTH` deep), so this keeps it far from the end
/// of its thread's stack: a chain of a thousand lets is an error, not a crash.
pub const MAX_NESTING: u32 = 100;

/// How deep a value bound by an effect (`let` among the effects, `as`) may nest. A loop that
/// wraps a value in itself at every turn (`let: {chain: '[chain]'}` in a `for`) would
/// otherwise build a chain that overflows the stack when it is written out or dropped.
pub const MAX_VALUE_DEPTH: usize = 256;

/// Bytes counted for one item of a list the evaluation builds.
pub(crate) const SLOT_BYTES: u64 = 32;

/// Bytes counted for one entry of an object the evaluation builds (besides its key's text
/// when the key is computed).
pub(crate) const ENTRY_BYTES: u64 = 48;

/// An event to evaluate: its name and its fields.
#[derive(Clone, Debug)]
pub struct Event {
    /// The event name, e.g. `crm.order.changed`.
    pub name: String,
    /// The fields the event carries (an object); rules see each field by name, and the
    /// whole object as `event`.
    pub payload: Value,
    /// The time of the event in milliseconds since the epoch, read by `now()`.
    pub now: Option<i64>,
}

impl Event {
    /// Builds an event from a document with an `event` key (the name), an optional `now`
    /// (a date text or milliseconds) and the fields.
    pub fn from_document(doc: &Value) -> Result<Event, String> {
        let Value::Object(map) = doc else {
            return Err(format!(
                "an event must be a map with an `event` key, got {}",
                doc.type_name()
            ));
        };
        let name = match map.get("event") {
            Some(Value::Str(s)) => s.to_string(),
            Some(other) => {
                return Err(format!(
                    "`event` must be the event name (a string), got {}",
                    other.type_name()
                ))
            }
            None => return Err("the event has no `event` key naming it".to_owned()),
        };
        let now = match map.get("now") {
            None | Some(Value::Null) => None,
            Some(Value::Str(s)) => Some(
                crate::funcs::parse_datetime(s)
                    .ok_or_else(|| format!("`now` is not a date: {s:?}"))?,
            ),
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| "`now` must be a date text or milliseconds".to_owned())?,
            ),
        };
        let mut payload = (**map).clone();
        payload.shift_remove("event");
        payload.shift_remove("now");
        Ok(Event {
            name,
            payload: Value::object(payload),
            now,
        })
    }
}

/// Why an evaluation failed.
///
/// Every kind but [`EvalErrorKind::World`] is deterministic: evaluating the same event with
/// the same rules, settings and world answers fails the same way again, so retrying cannot
/// help (see [`EvalError::is_deterministic`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvalErrorKind {
    /// A value of the wrong type, a division by zero, an overflow.
    Type,
    /// The step budget ran out ([`EvalOptions::budget`]).
    Budget,
    /// A limit on what one evaluation may produce was reached: more effects in the plan
    /// than [`EvalOptions::max_effects`], more bytes of text, lists and objects built than
    /// [`EvalOptions::max_bytes`], a template's own fuel, lets nested deeper than
    /// [`MAX_NESTING`], or a value bound among the effects deeper than
    /// [`MAX_VALUE_DEPTH`]. The message says which limit, its value and how to raise it.
    Limit,
    /// The world could not answer a lookup. The only transient kind: the same evaluation
    /// may succeed once the systems answer again.
    World,
}

/// An evaluation error, naming the rule and the place in the rule files.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct EvalError {
    /// The kind of failure.
    pub kind: EvalErrorKind,
    /// The rule being evaluated.
    pub rule: Option<String>,
    /// The flow being evaluated, if any.
    pub flow: Option<String>,
    /// `path:line:col` of the expression.
    pub location: Option<String>,
    /// What went wrong.
    pub message: String,
}

impl EvalError {
    /// Whether evaluating the same event again with the same rules (and the same answers
    /// from the world) would fail the same way: true for type errors and for the step
    /// budget, the effect limit and the memory budget; false only for failed lookups
    /// ([`EvalErrorKind::World`]), which are worth retrying.
    pub fn is_deterministic(&self) -> bool {
        !matches!(self.kind, EvalErrorKind::World)
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(rule) = &self.rule {
            write!(f, "rule `{rule}`")?;
            if let Some(flow) = &self.flow {
                write!(f, " (in flow `{flow}`)")?;
            }
            if let Some(loc) = &self.location {
                write!(f, " at {loc}")?;
            }
            write!(f, ": ")?;
        } else if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// An evaluation error inside the evaluator: only the mark that one happened. The error
/// itself is kept by the context that made it ([`Ctx::error`]) until whoever stops the
/// evaluation takes it ([`Ctx::take_failure`]).
///
/// A mark of no size keeps `Result<Value, Fail>` a pair of scalars like [`Value`] itself (an
/// error of one word, a box, did not: such a result was returned through memory and copied
/// as a 16-byte block right after it was stored in two words, which the processor cannot
/// forward, at every node evaluated).
#[derive(Debug)]
#[must_use]
pub(crate) struct Fail(());

// An evaluation's result is two words, returned in two registers.
const _: () = assert!(std::mem::size_of::<Result<Value, Fail>>() == 16);

/// Options of one evaluation.
///
/// Three limits turn a runaway rule into a clear, deterministic error
/// ([`EvalError::is_deterministic`]) naming the rule, the flow and the `file:line:col`,
/// instead of a hang, a huge plan or an aborted process:
///
/// - [`budget`](EvalOptions::budget): steps of evaluation ([`DEFAULT_BUDGET`], 20 million);
///   running out is an [`EvalErrorKind::Budget`] error;
/// - [`max_effects`](EvalOptions::max_effects): effects in the plan ([`DEFAULT_MAX_EFFECTS`],
///   10 000); the effect that would pass it is refused with an [`EvalErrorKind::Limit`]
///   error, before it is built;
/// - [`max_bytes`](EvalOptions::max_bytes): bytes of text, lists and objects the evaluation
///   builds, the plan's own content included ([`DEFAULT_MAX_BYTES`], 128 MiB); sizes are
///   checked before allocating where they are known (`a + b` on texts, `join`, `format`,
///   templates, …), so a text doubled thirty times is refused with an
///   [`EvalErrorKind::Limit`] error instead of allocating gigabytes.
///
/// ```
/// use skladsync_engine::EvalOptions;
///
/// let opts = EvalOptions { max_effects: 50_000, max_bytes: 256 << 20, ..EvalOptions::default() };
/// assert_eq!(opts.budget, skladsync_engine::eval::DEFAULT_BUDGET);
/// ```
pub struct EvalOptions<'t> {
    /// Settings to use instead of the rule set's own (e.g. a test case's overrides merged in).
    pub settings: Option<&'t Value>,
    /// The step budget.
    pub budget: u64,
    /// The most effects the plan may have (journal entries, skips and links included).
    pub max_effects: usize,
    /// The memory budget: the most bytes of text, lists and objects one evaluation may
    /// build. Lists count 32 bytes an item, objects 48 bytes an entry, texts their length;
    /// every effect also counts the size of what it carries (its body, id, subject, text),
    /// as written out.
    pub max_bytes: u64,
    /// Where to record why each rule fired or not.
    pub trace: Option<&'t mut Trace>,
    /// Where to add the time and the steps each rule takes (a profile of the rule set).
    pub rule_times: Option<&'t mut RuleTimes>,
}

/// The time and the evaluation steps each rule took, summed over the evaluations that were
/// given it ([`EvalOptions::rule_times`]): where an event's evaluation goes, rule by rule.
/// `cargo bench -p skladsync-runner --bench engine` prints one for the default rules. A rule
/// that does not listen to the event takes no time and is not listed; one that fails its
/// `when` is, with the time its conditions took. The clock is read twice a rule, so a rule of
/// a few steps reads some tens of nanoseconds dearer than it is.
#[derive(Clone, Debug, Default)]
pub struct RuleTimes {
    /// How many evaluations were recorded.
    pub evaluations: u64,
    /// Per rule, in the order the rules first ran.
    pub rules: Vec<RuleTime>,
}

/// One rule's share of [`RuleTimes`].
#[derive(Clone, Debug, Default)]
pub struct RuleTime {
    /// The rule's id.
    pub rule: String,
    /// The time it took, in all.
    pub time: std::time::Duration,
    /// The evaluation steps it took (of [`EvalOptions::budget`]), in all.
    pub steps: u64,
}

impl RuleTimes {
    fn add(&mut self, rule: &str, time: std::time::Duration, steps: u64) {
        match self.rules.iter_mut().find(|r| r.rule == rule) {
            Some(r) => {
                r.time += time;
                r.steps += steps;
            }
            None => self.rules.push(RuleTime {
                rule: rule.to_owned(),
                time,
                steps,
            }),
        }
    }

    /// The rules, dearest first.
    pub fn by_time(&self) -> Vec<&RuleTime> {
        let mut rules: Vec<&RuleTime> = self.rules.iter().collect();
        rules.sort_by_key(|r| std::cmp::Reverse(r.time));
        rules
    }
}

impl Default for EvalOptions<'_> {
    fn default() -> Self {
        EvalOptions {
            settings: None,
            budget: DEFAULT_BUDGET,
            max_effects: DEFAULT_MAX_EFFECTS,
            max_bytes: DEFAULT_MAX_BYTES,
            trace: None,
            rule_times: None,
        }
    }
}

/// The limits of one evaluation, as the evaluator keeps them.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub budget: u64,
    pub max_effects: usize,
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            budget: DEFAULT_BUDGET,
            max_effects: DEFAULT_MAX_EFFECTS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// The state of one evaluation.
pub(crate) struct Ctx<'a> {
    pub prog: &'a Program,
    pub settings: &'a Value,
    pub globals: Vec<Value>,
    pub world: &'a dyn World,
    pub now: Option<i64>,
    pub budget: u64,
    /// What is left of the memory budget, in bytes.
    pub bytes_left: u64,
    pub limits: Limits,
    /// How many lets and function calls are being evaluated inside one another.
    pub nesting: u32,
    pub plan: PlanBuilder,
    pub rule: Str,
    pub flow: Option<Str>,
    pub current: Option<&'a crate::compile::node::CRule>,
    /// The current rule's subject, once evaluated (flows' journal entries carry it).
    pub subject: Option<Value>,
    pub trace: Option<&'a mut Trace>,
    /// Slot vectors of finished function calls, reused so calls do not allocate.
    pub spare_frames: Vec<Vec<Option<Value>>>,
    /// Results of calls of user functions with event-level arguments (see
    /// [`Memo`]), so that `c2m_lines(order)` in three rules is computed once.
    pub memo: Vec<Memo>,
    /// Tests only: every fast path off ([`Ctx::test`], [`Ctx::with_ref`], one-argument
    /// built-ins by reference, the ops of the threaded evaluator), so the general path can
    /// be compared with them.
    #[cfg(test)]
    pub plain: bool,
    /// Tests only: every node evaluated by the general dispatcher instead of the op its
    /// shape was given, so the ops can be compared with it (values, steps, charges).
    #[cfg(test)]
    pub unthreaded: bool,
    /// Whether the settings agree with the rule set's own wherever the compiled code was
    /// folded for them: [`Node::Settled`](crate::compile::node::Node::Settled) takes its
    /// folded side then.
    pub settled: bool,
    /// The error the evaluation failed with ([`Fail`] is only its mark), from
    /// [`Ctx::error`] to [`Ctx::take_failure`].
    failure: std::cell::Cell<Option<Box<EvalError>>>,
}

/// The result of a call of a user function whose arguments are all event-level (globals,
/// key paths below them, literals): within one evaluation such a call gives the same
/// result again, as long as the function reads nothing of the world (it is pure) or the
/// part of the plan that lookups see has not changed since (`version`).
pub(crate) struct Memo {
    pub func: u32,
    pub args: Vec<Value>,
    pub version: u64,
    pub result: Value,
}

/// The slots of a rule, flow or function being evaluated.
pub(crate) struct Frame<'a> {
    pub slots: Vec<Option<Value>>,
    pub lets: &'a Lets,
}

impl<'a> Frame<'a> {
    pub fn new(size: u32, lets: &'a Lets) -> Frame<'a> {
        Frame {
            slots: std::iter::repeat_with(|| None)
                .take(size as usize)
                .collect(),
            lets,
        }
    }

    pub fn set(&mut self, slot: u32, v: Value) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = Some(v);
        }
    }
}

/// A call of a built-in that needs the context: gives it the lambda, the world and the
/// budget.
pub(crate) struct Call<'c, 'a> {
    pub cx: &'c mut Ctx<'a>,
    pub frame: &'c mut Frame<'a>,
    pub lambda: Option<&'a CLambda>,
    pub loc: LocId,
}

impl Call<'_, '_> {
    /// Calls the lambda argument.
    pub fn apply(&mut self, args: &[Value]) -> Result<Value, Fail> {
        let Some(lambda) = self.lambda else {
            return Err(self.fail("this function needs a lambda argument"));
        };
        for (slot, v) in lambda.params.iter().zip(args) {
            self.frame.set(*slot, v.clone());
        }
        self.cx.eval(&lambda.body, self.frame)
    }

    /// Whether the lambda argument holds for `args`: the truthiness of
    /// [`Call::apply`]'s value, found without building it where it can be
    /// ([`Ctx::test`]).
    pub fn holds(&mut self, args: &[Value]) -> Result<bool, Fail> {
        let Some(lambda) = self.lambda else {
            return Err(self.fail("this function needs a lambda argument"));
        };
        for (slot, v) in lambda.params.iter().zip(args) {
            self.frame.set(*slot, v.clone());
        }
        self.cx.test(&lambda.body, self.frame)
    }

    /// Whether a lambda was given.
    pub fn has_lambda(&self) -> bool {
        self.lambda.is_some()
    }

    /// Spends budget.
    pub fn tick(&mut self, steps: u64) -> Result<(), Fail> {
        self.cx.tick(steps, self.loc)
    }

    /// Spends memory budget: call before building something of `bytes` bytes.
    pub fn charge(&mut self, bytes: u64) -> Result<(), Fail> {
        self.cx.charge(bytes, self.loc)
    }

    /// The value as text (see [`Value::to_text`]), its size taken from the memory budget
    /// before it is built.
    pub fn text(&mut self, v: &Value) -> Result<String, Fail> {
        self.cx.text(v, self.loc)
    }

    /// The value as JSON, its size taken from the memory budget before it is built.
    pub fn json(&mut self, v: &Value) -> Result<String, Fail> {
        let left = usize::try_from(self.cx.bytes_left).unwrap_or(usize::MAX);
        match v.to_json_within(left) {
            Some(text) => {
                self.charge(text.len() as u64)?;
                Ok(text)
            }
            None => Err(self.cx.out_of_bytes(u64::MAX, self.loc)),
        }
    }

    /// An error at the call.
    pub fn fail(&self, message: impl Into<String>) -> Fail {
        self.cx.error(EvalErrorKind::Type, self.loc, message)
    }

    /// The world, with the plan's own creations and links laid over it.
    pub fn world(&self) -> &dyn World {
        self.cx.world
    }

    /// The plan built so far (for lookups of what it created or linked).
    pub fn plan(&self) -> &PlanBuilder {
        &self.cx.plan
    }

    /// The event's clock.
    pub fn now(&self) -> Option<i64> {
        self.cx.now
    }

    /// A world error at the call.
    pub fn world_error(&self, message: impl Into<String>) -> Fail {
        self.cx.error(EvalErrorKind::World, self.loc, message)
    }
}

impl<'a> Ctx<'a> {
    pub fn new(
        prog: &'a Program,
        settings: &'a Value,
        event: &Event,
        world: &'a dyn World,
        limits: Limits,
        trace: Option<&'a mut Trace>,
    ) -> Ctx<'a> {
        let settled = crate::compile::fold::settled(prog, settings);
        Ctx::settled(prog, settings, event, world, limits, trace, settled)
    }

    /// [`Ctx::new`] with whether the settings are settled already known.
    fn settled(
        prog: &'a Program,
        settings: &'a Value,
        event: &Event,
        world: &'a dyn World,
        limits: Limits,
        trace: Option<&'a mut Trace>,
        settled: bool,
    ) -> Ctx<'a> {
        let globals = prog
            .globals
            .iter()
            .map(|name| match &**name {
                "settings" => settings.clone(),
                "event" => event.payload.clone(),
                field => event.payload.get(field),
            })
            .collect();
        Ctx {
            prog,
            settings,
            globals,
            world,
            now: event.now,
            budget: limits.budget,
            bytes_left: limits.max_bytes,
            limits,
            nesting: 0,
            plan: PlanBuilder::new(&event.name),
            rule: crate::value::Str::from(""),
            flow: None,
            current: None,
            subject: None,
            trace,
            spare_frames: Vec::new(),
            memo: Vec::new(),
            #[cfg(test)]
            plain: false,
            #[cfg(test)]
            unthreaded: UNTHREADED.with(std::cell::Cell::get),
            settled,
            failure: std::cell::Cell::new(None),
        }
    }

    pub fn tick(&mut self, steps: u64, loc: LocId) -> Result<(), Fail> {
        if self.budget < steps {
            self.budget = 0;
            return Err(self.error(
                EvalErrorKind::Budget,
                loc,
                "the evaluation ran out of its step budget (is a collection much larger \
                 than expected, or a lookup repeated for every item of a large list?)",
            ));
        }
        self.budget -= steps;
        Ok(())
    }

    /// Spends `bytes` of the memory budget; call it before building something that big.
    #[inline]
    pub fn charge(&mut self, bytes: u64, loc: LocId) -> Result<(), Fail> {
        if bytes > self.bytes_left {
            return Err(self.out_of_bytes(bytes, loc));
        }
        self.bytes_left -= bytes;
        Ok(())
    }

    #[cold]
    pub fn out_of_bytes(&mut self, bytes: u64, loc: LocId) -> Fail {
        self.bytes_left = 0;
        let max = self.limits.max_bytes;
        let needed = if bytes == u64::MAX {
            "more".to_owned()
        } else {
            format!("{bytes} more")
        };
        self.error(
            EvalErrorKind::Limit,
            loc,
            format!(
                "the evaluation would build more than its memory budget of {max} bytes of \
                 text, lists and objects (this step needs {needed}): the limit `max_bytes`, \
                 set by `limits.max_eval_bytes` in the runner configuration; raise it if \
                 this much is intended (is a text doubled in a loop, or a large value \
                 repeated for every item of a list?)"
            ),
        )
    }

    /// Enters a let or a function call; the caller leaves with `self.nesting -= 1` once
    /// it is evaluated (whatever the outcome).
    #[inline]
    pub fn enter(&mut self, loc: LocId) -> Result<(), Fail> {
        if self.nesting >= MAX_NESTING {
            return Err(self.error(
                EvalErrorKind::Limit,
                loc,
                format!(
                    "lets and functions nested more than {MAX_NESTING} deep (a `let` whose \
                     value needs a `let` whose value needs …): a fixed limit that keeps the \
                     evaluation far from the end of its stack"
                ),
            ));
        }
        self.nesting += 1;
        Ok(())
    }

    /// Refuses a value about to be bound by an effect if it nests deeper than
    /// [`MAX_VALUE_DEPTH`].
    pub fn check_depth(&self, v: &Value, loc: LocId) -> Result<(), Fail> {
        if !v.deeper_than(MAX_VALUE_DEPTH) {
            return Ok(());
        }
        Err(self.too_deep(loc))
    }

    /// [`Ctx::check_depth`] of a value that is charged next (a body named with `as`): its
    /// weight too ([`Value::weight_within`] with no cap) when one walk found both.
    pub fn check_depth_weighing(&self, v: &Value, loc: LocId) -> Result<Option<u64>, Fail> {
        match v.weight_and_depth(MAX_VALUE_DEPTH) {
            Some((_, true)) => Err(self.too_deep(loc)),
            Some((weight, false)) => Ok(Some(weight)),
            None => self.check_depth(v, loc).map(|()| None),
        }
    }

    #[cold]
    fn too_deep(&self, loc: LocId) -> Fail {
        self.error(
            EvalErrorKind::Limit,
            loc,
            format!(
                "this value nests more than {MAX_VALUE_DEPTH} levels deep (does a loop wrap \
                 a value in itself at every turn?): a fixed limit that keeps writing it out \
                 far from the end of the stack"
            ),
        )
    }

    /// The effect limit, checked before an effect is built.
    pub fn check_effects(&self, loc: LocId) -> Result<(), Fail> {
        if self.plan.len() < self.limits.max_effects {
            return Ok(());
        }
        Err(self.too_many_effects(loc))
    }

    #[cold]
    fn too_many_effects(&self, loc: LocId) -> Fail {
        let max = self.limits.max_effects;
        self.error(
            EvalErrorKind::Limit,
            loc,
            format!(
                "the plan would have more than {max} effects: the limit `max_effects`, set \
                 by `limits.max_effects` in the runner configuration; raise it if this many \
                 is intended (is a `for` running over a much larger list than expected?)"
            ),
        )
    }

    /// The value as text (see [`Value::to_text`]), its size taken from the memory budget
    /// before it is built: a list or object that shares its parts can stand for a text far
    /// larger than the memory it takes.
    pub fn text(&mut self, v: &Value, loc: LocId) -> Result<String, Fail> {
        let left = usize::try_from(self.bytes_left).unwrap_or(usize::MAX);
        match v.to_text_within(left) {
            Some(text) => {
                self.charge(text.len() as u64, loc)?;
                Ok(text)
            }
            None => Err(self.out_of_bytes(u64::MAX, loc)),
        }
    }

    /// An error at `loc`: kept by the context, its mark returned (see [`Fail`]).
    pub fn error(&self, kind: EvalErrorKind, loc: LocId, message: impl Into<String>) -> Fail {
        self.failure.set(Some(Box::new(EvalError {
            kind,
            rule: (!self.rule.is_empty()).then(|| self.rule.to_string()),
            flow: self.flow.as_ref().map(|f| f.to_string()),
            location: self.prog.locs.get(loc as usize).map(|l| l.position()),
            message: message.into(),
        })));
        Fail(())
    }

    /// The error whose mark is `fail`: the last one [`Ctx::error`] made (a mark is returned
    /// at once, up to whoever stops the evaluation, so no other error is made between).
    pub fn take_failure(&self, fail: Fail) -> EvalError {
        let Fail(()) = fail;
        match self.failure.take() {
            Some(e) => *e,
            // Not reached: a mark is only made with its error. Still an error, never a panic.
            None => EvalError {
                kind: EvalErrorKind::Type,
                rule: (!self.rule.is_empty()).then(|| self.rule.to_string()),
                flow: self.flow.as_ref().map(|f| f.to_string()),
                location: None,
                message: "the evaluation failed without saying why (an error of skladsync \
                          itself: please report it)"
                    .to_owned(),
            },
        }
    }

    /// The message of the error whose mark is `fail`, the error kept (for a trace).
    pub fn failure_message(&self, fail: &Fail) -> String {
        let Fail(()) = fail;
        let e = self.failure.take();
        let message = e.as_ref().map_or_else(String::new, |e| e.to_string());
        self.failure.set(e);
        message
    }
}

/// [`fold::settled`](crate::compile::fold::settled), remembered for the last settings
/// object the program was evaluated with: the daemon and the bench evaluate every event
/// with one settings object (the rule set's own with the runner's `connection`), whose
/// comparison with the folded-for settings walks every assumed path. The object is held by
/// the program while it is remembered, so an object at the same address is that object,
/// and a shared object is never changed in place.
fn settled_remembered(prog: &Program, settings: &Value) -> bool {
    let Value::Object(object) = settings else {
        return crate::compile::fold::settled(prog, settings);
    };
    let last = |cache: &Option<(Value, bool)>| match cache {
        Some((Value::Object(o), settled)) if Arc::ptr_eq(o, object) => Some(*settled),
        _ => None,
    };
    if let Some(settled) = prog.last_settled.lock().ok().and_then(|c| last(&c)) {
        return settled;
    }
    let settled = crate::compile::fold::settled(prog, settings);
    if let Ok(mut cache) = prog.last_settled.lock() {
        *cache = Some((settings.clone(), settled));
    }
    settled
}

/// Evaluates every rule that listens to the event, in rule-set order.
pub(crate) fn evaluate(
    prog: &Program,
    settings: &Value,
    event: &Event,
    world: &dyn World,
    opts: EvalOptions<'_>,
) -> Result<Plan, EvalError> {
    let limits = Limits {
        budget: opts.budget,
        max_effects: opts.max_effects,
        max_bytes: opts.max_bytes,
    };
    // Only here: a program is complete (folded) once it evaluates events.
    let settled = settled_remembered(prog, settings);
    let mut rule_times = opts.rule_times;
    let mut cx = Ctx::settled(prog, settings, event, world, limits, opts.trace, settled);
    if let Some(indexes) = prog.rules_by_event.get(event.name.as_str()) {
        for &i in indexes {
            if let Some(rule) = prog.rules.get(i as usize) {
                match rule_times.as_deref_mut() {
                    None => effects::run_rule(&mut cx, rule).map_err(|f| cx.take_failure(f))?,
                    Some(times) => {
                        let (start, budget) = (std::time::Instant::now(), cx.budget);
                        let result = effects::run_rule(&mut cx, rule);
                        times.add(&rule.id, start.elapsed(), budget.saturating_sub(cx.budget));
                        result.map_err(|f| cx.take_failure(f))?;
                    }
                }
            }
        }
    }
    if let Some(times) = rule_times {
        times.evaluations += 1;
    }
    Ok(cx.plan.finish())
}

/// Evaluates one expression of the program outside any rule (settings checks, examples).
pub(crate) fn eval_standalone(
    prog: &Program,
    settings: &Value,
    expr: &crate::compile::node::CExpr,
    frame_size: u32,
) -> Result<Value, EvalError> {
    eval_alone(
        prog,
        settings,
        expr,
        frame_size,
        &crate::world::EmptyWorld,
        None,
    )
}

/// Evaluates one expression outside any rule, with a world and a clock.
pub(crate) fn eval_alone(
    prog: &Program,
    settings: &Value,
    expr: &crate::compile::node::CExpr,
    frame_size: u32,
    world: &dyn World,
    now: Option<i64>,
) -> Result<Value, EvalError> {
    let event = Event {
        name: String::new(),
        payload: Value::Null,
        now,
    };
    let mut cx = Ctx::new(prog, settings, &event, world, Limits::default(), None);
    let lets = Lets::default();
    let mut frame = Frame::new(frame_size, &lets);
    cx.eval(expr, &mut frame).map_err(|f| cx.take_failure(f))
}

/// The effects of a plan that came from one rule, for tests and tools.
pub fn effects_of<'p>(plan: &'p Plan, rule: &'p str) -> impl Iterator<Item = &'p Effect> + 'p {
    plan.effects.iter().filter(move |e| *e.rule == *rule)
}
