//! Applying a plan: effects in order, pending references resolved from earlier answers,
//! idempotent creates, links written after what they name is confirmed.
//!
//! # Algorithm
//!
//! **A plan that starts applying is finished.** The daemon records the plan once, with the
//! inbox item it came from ([`SyncState::start_plan`]), before its first effect. Then, for
//! each effect in order:
//!
//! 1. Pending references (`{$ref: name.path}`) in its id, body or link ids are replaced by the
//!    answers of the earlier effects named `name`. A reference to an effect that did not
//!    succeed fails this effect.
//! 2. The effect is applied (see the target mapping in `docs/contract.md`); its answer is
//!    recorded (one small write, flushed) before the next effect starts — for a `link`, in
//!    the same batch as the link itself.
//! 3. A failed effect is journalled with the API's raw error. If it is `optional` and was
//!    refused (not merely unreachable), the plan goes on; otherwise the run stops there, **the plan stays recorded**, and the daemon
//!    resumes it later from that effect — never re-evaluates the event in its place, so a
//!    link or marker written by an earlier effect cannot make the rules skip work that was
//!    never done. Confirmed effects are not repeated; their answers are reused.
//!
//! A crash, a 5xx, a dropped connection, a rate limit or a shutdown all end the same way: the
//! plan is resumed. Only a failure that cannot succeed ends it early (see `daemon`:
//! `GAVE_UP`, with the effects that never ran).
//!
//! # Idempotent creates
//!
//! Every create has a key: the effect's `key`, or (for keyless creates) one made of the
//! inbox item, the plan and the effect index. From the key the runner derives the МойСклад
//! `syncId` (UUID v5) and, when the rule gave a key, the retailCRM `externalId` (unless the
//! body has one). The key's state is kept durably:
//!
//! * before sending, the key is marked *in flight* (flushed);
//! * when the answer arrives, it is marked *done* with the created entity;
//! * if no answer arrives (crash, dropped connection, commit-then-drop), the key stays in
//!   flight, and the next attempt first **looks the key up** in the system (МойСклад by
//!   `syncId`, retailCRM by `externalId`, webhooks by URL and type, sub-objects by their
//!   fields) and uses what it finds instead of creating again;
//! * a retailCRM "externalId already exists" answer is resolved by the same lookup.
//!
//! Links are effects too, placed by rules after the creates they name; since a reference
//! to a failed create fails the link, a link is written only after its entities exist.

pub mod batch;
mod crm;
mod error;
mod moysklad;
mod stats;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value as Json};
use skladsync_engine::value::PathKey;
use skladsync_engine::{Action, Effect, Value};

use crate::state::{
    JournalEntry, JournalLimits, KeyRecord, Link, Outbox, StateError, SyncState, TaskRecord,
};
use crate::world::{from_json, to_json, ReferenceCache, Systems};

pub use error::{ApplyError, FailureClass};
pub use moysklad::sync_id;
pub use stats::{Stats, StatsSnapshot};

/// The direction a journal entry is filed under, from the event name.
pub fn direction(event: &str) -> &'static str {
    if event.starts_with("crm.") {
        "crm→moysklad"
    } else if event.starts_with("moysklad.") || event == "stock.pass" {
        "moysklad→crm"
    } else if event == "settings.saved" {
        "settings"
    } else {
        "runner"
    }
}

/// An effect that failed for good (after the clients' own retries).
#[derive(Clone, Debug)]
pub struct EffectFailure {
    /// Its index in the plan.
    pub index: usize,
    /// The rule that planned it.
    pub rule: String,
    /// What kind of failure.
    pub class: FailureClass,
    /// A stable code (`MS_API_ERROR`, `MS_AUTH_FAILED`, …).
    pub code: String,
    /// The system concerned.
    pub system: String,
    /// Human text.
    pub text: String,
    /// The API's raw error.
    pub raw: Json,
    /// What the effect was about.
    pub subject: Json,
}

impl EffectFailure {
    /// The `problem` of a `sync.problem` event.
    pub fn problem(&self) -> Json {
        json!({
            "code": self.code,
            "kind": self.class.kind(),
            "system": self.system,
            "text": self.text,
            "raw": self.raw,
            "rule": self.rule,
            "subject": self.subject,
        })
    }
}

/// How applying a plan ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every effect was applied (optional ones may have failed, journalled).
    Applied {
        /// Optional effects that failed.
        optional_failures: Vec<EffectFailure>,
    },
    /// A required effect failed; it and the effects after it were not applied. The plan
    /// stays recorded: the next run resumes it from that effect.
    Failed(Box<EffectFailure>),
    /// A stop was asked for: effect `next` and those after it were not applied (or, for the
    /// one abandoned in flight, not confirmed). The plan stays recorded.
    Interrupted {
        /// The first effect not confirmed.
        next: usize,
    },
}

/// How long an effect in flight may still take after a stop is asked for.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// What an effect of a plan is, in one line (journal entries of effects that never ran).
pub fn describe(effect: &Effect) -> String {
    let what = match &effect.action {
        Action::Create {
            system,
            entity,
            key,
            ..
        } => match key {
            Some(k) => format!("create {system}.{entity} (key {k})"),
            None => format!("create {system}.{entity}"),
        },
        Action::Update { system, entity, .. } => format!("update {system}.{entity}"),
        Action::Delete { system, entity, .. } => format!("delete {system}.{entity}"),
        Action::Link { kind, .. } => format!("link {kind}"),
        Action::Journal { code, .. } => format!("journal {code}"),
        Action::Task { kind, .. } => format!("task {kind}"),
        Action::Skip { .. } => "skip".to_string(),
    };
    format!("{what} [rule {}]", effect.rule)
}

/// An effect's kind, as a metrics label (bounded: no ids, codes or texts).
pub fn effect_kind(effect: &Effect) -> String {
    match &effect.action {
        Action::Create { system, entity, .. } => format!("create {system}.{entity}"),
        Action::Update { system, entity, .. } => format!("update {system}.{entity}"),
        Action::Delete { system, entity, .. } => format!("delete {system}.{entity}"),
        Action::Link { kind, .. } => format!("link {kind}"),
        Action::Journal { .. } => "journal".to_string(),
        Action::Task { .. } => "task".to_string(),
        Action::Skip { .. } => "skip".to_string(),
    }
}

/// Applies plans to the two systems and the state.
pub struct Applier {
    /// The clients.
    pub systems: Systems,
    /// The state.
    pub state: SyncState,
    /// Reference data cache (cleared after creates of reference data).
    pub refs: Arc<ReferenceCache>,
    /// The URL of our МойСклад webhook receiver (fills `moysklad.webhook` creates).
    pub webhook_url: Option<String>,
    /// Journal limits.
    pub journal: JournalLimits,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Set when the daemon stops: plans end between two effects.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// CRM orders read ahead of their turn (our CRM writes drop what they may change).
    pub orders: Arc<crate::daemon::prefetch::OrderPrefetch>,
    /// CRM customers read ahead of their turn (our CRM writes drop what they may change).
    pub customers: Arc<crate::daemon::prefetch::CustomerPrefetch>,
    /// Lookups gathered across waiting orders (our МойСклад writes drop what they may change).
    pub lookups: Arc<crate::world::prefetch::LookupPrefetch>,
    /// Creates of plans applied at the same time, gathered into bulk POSTs.
    pub batch: Arc<batch::Batcher>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Applier")
    }
}

/// Replaces pending references by the answers they name.
pub fn resolve(v: &Value, results: &HashMap<String, Value>) -> Result<Value, ApplyError> {
    Ok(match v {
        Value::Ref(r) => {
            let Some(base) = results.get(&*r.name) else {
                return Err(ApplyError::Invalid(format!(
                    "`{}` refers to `{}`, which was not created",
                    r.display_path(),
                    r.name
                )));
            };
            let mut cur = base.clone();
            for step in &r.path {
                cur = match step {
                    PathKey::Key(k) => cur.get(k),
                    PathKey::Index(i) => cur.index(*i),
                };
            }
            cur
        }
        Value::Array(items) => Value::array(
            items
                .iter()
                .map(|i| resolve(i, results))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut out = skladsync_engine::value::Map::default();
            for (k, x) in m.iter() {
                out.insert(k.clone(), resolve(x, results)?);
            }
            Value::object(out)
        }
        other => other.clone(),
    })
}

/// What an effect is about, for journal entries of its failure.
fn effect_subject(effect: &Effect, work: &str) -> Json {
    let target = match &effect.action {
        Action::Create { system, entity, .. }
        | Action::Update { system, entity, .. }
        | Action::Delete { system, entity, .. } => format!("{system}.{entity}"),
        other => other.op().to_string(),
    };
    let mut s = json!({"work": work, "target": target});
    if let Action::Create { key: Some(k), .. } = &effect.action {
        s["key"] = json!(k);
    }
    s
}

/// One plan being applied.
#[derive(Clone, Debug)]
pub struct PlanRun {
    /// The event name.
    pub event: String,
    /// The inbox subject it came from (journal subjects of failures).
    pub work: String,
    /// Now (unix ms).
    pub now: i64,
}

impl Applier {
    /// Applies the plan in `outbox` (already recorded with [`SyncState::start_plan`]),
    /// resuming after the effects already confirmed. Each confirmed effect is recorded at
    /// once (one small write); a stop request ([`Applier::stop`]) ends the run between two
    /// effects, or abandons the effect in flight after [`STOP_GRACE`] (its outcome is then
    /// unknown, and the next run looks it up by its key before repeating it).
    ///
    /// Each effect is dropped once applied: what its body holds (a stock pass's 250 offers
    /// an upload) is not kept to the end of the plan.
    pub async fn apply(&self, run: &PlanRun, outbox: Outbox) -> Result<Outcome, StateError> {
        let _active = self.batch.active();
        let mut results: HashMap<String, Value> = HashMap::new();
        let mut optional_failures = Vec::new();
        let Outbox {
            seq,
            plan,
            started,
            done,
            ..
        } = outbox;
        for (i, effect) in plan.effects.into_iter().enumerate() {
            let effect = &effect;
            let name = effect_name(effect);
            if let Some(done) = done.get(&i) {
                if let Some(n) = name {
                    if !done.is_null() {
                        results.insert(n.to_string(), from_json(done));
                    }
                }
                continue;
            }
            if self.stopping() {
                return Ok(Outcome::Interrupted { next: i });
            }
            let auto_key = format!("auto:{seq}:{started}:{i}");
            let res = tokio::select! {
                r = self.effect(run, seq, i, effect, &results, &auto_key) => r,
                () = self.stopped_for(STOP_GRACE) => return Ok(Outcome::Interrupted { next: i }),
            };
            let kind = effect_kind(effect);
            let answer = match res {
                Ok(a) => {
                    self.stats.effect_outcome(&kind, "ok");
                    a
                }
                Err(ApplyError::State(e)) => {
                    self.stats.effect_outcome(&kind, "failed");
                    return Err(e);
                }
                Err(e) => {
                    self.stats.effect_outcome(&kind, "failed");
                    let f = self.failure(run, i, effect, &e);
                    self.stats.failure();
                    self.journal_failure(run, &f)?;
                    // An optional effect may be refused without holding up the plan; one
                    // that could not reach its system is resumed like any other, so a
                    // passing outage loses nothing.
                    if effect_optional(effect) && f.class != FailureClass::Transient {
                        optional_failures.push(f);
                        self.state.effect_done(seq, i, &Json::Null)?;
                        continue;
                    }
                    return Ok(Outcome::Failed(Box::new(f)));
                }
            };
            if let Some(n) = name {
                results.insert(n.to_string(), from_json(&answer));
            }
            // A link records itself together with its progress (see `effect`).
            if !matches!(effect.action, Action::Link { .. }) {
                self.state.effect_done(seq, i, &answer)?;
            }
        }
        Ok(Outcome::Applied { optional_failures })
    }

    /// Whether a stop was asked for.
    fn stopping(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves `grace` after a stop is asked for (never, if none is).
    async fn stopped_for(&self, grace: std::time::Duration) {
        loop {
            if self.stopping() {
                tokio::time::sleep(grace).await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    fn failure(
        &self,
        run: &PlanRun,
        index: usize,
        effect: &Effect,
        e: &ApplyError,
    ) -> EffectFailure {
        let class = e.class();
        tracing::warn!(event = %run.event, rule = %effect.rule, index, error = %e, "effect failed");
        EffectFailure {
            index,
            rule: effect.rule.to_string(),
            class,
            code: e.code().to_string(),
            system: e.system().to_string(),
            text: e.to_string(),
            raw: e.raw(),
            subject: effect_subject(effect, &run.work),
        }
    }

    /// Journals a failed effect (the runner's own entry, with the raw API error).
    pub fn journal_failure(&self, run: &PlanRun, f: &EffectFailure) -> Result<(), StateError> {
        self.stats.journal();
        self.state.journal(
            JournalEntry {
                time: run.now,
                first: run.now,
                count: 1,
                direction: direction(&run.event).to_string(),
                rule: f.rule.clone(),
                code: f.code.clone(),
                level: if f.class == FailureClass::Transient {
                    "warning".into()
                } else {
                    "error".into()
                },
                text: f.text.clone(),
                subject: f.subject.clone(),
                raw: f.raw.clone(),
            },
            self.journal,
        )
    }

    async fn effect(
        &self,
        run: &PlanRun,
        seq: u64,
        index: usize,
        effect: &Effect,
        results: &HashMap<String, Value>,
        auto_key: &str,
    ) -> Result<Json, ApplyError> {
        match &effect.action {
            Action::Create { system, entity, .. } if &**system == "crm" => {
                self.orders.crm_write(entity, None, true);
                self.customers.crm_write(entity, None, true);
            }
            Action::Update {
                system, entity, id, ..
            }
            | Action::Delete {
                system, entity, id, ..
            } if &**system == "crm" => {
                let id = resolve(id, results).ok().map(|v| to_json(&v));
                self.orders.crm_write(entity, id.as_ref(), false);
                self.customers.crm_write(entity, id.as_ref(), false);
            }
            _ => {}
        }
        match &effect.action {
            Action::Create {
                system,
                entity,
                key,
                body,
                ..
            } => {
                let body = to_json(&resolve(body, results)?);
                let parent = body.get("parent").cloned();
                let created = self
                    .create(system, entity, key.as_deref(), auto_key, body.clone())
                    .await;
                if &**system == "moysklad" {
                    self.lookups.ms_wrote(entity, created.as_ref().ok());
                }
                let answer = created?;
                if let Some(id) = answer.get("id") {
                    self.note_written(system, entity, id, &body)?;
                }
                self.note_parent_write(system, entity, parent.as_ref())
                    .await?;
                self.stats.effect("create", system, entity);
                Ok(answer)
            }
            Action::Update {
                system,
                entity,
                id,
                body,
                ..
            } => {
                let id = to_json(&resolve(id, results)?);
                let body = to_json(&resolve(body, results)?);
                let answer = match &**system {
                    "moysklad" => {
                        let updated = match moysklad::bulk_update(entity, &id, &body) {
                            Some((path, own)) => self
                                .batch
                                .update(&self.systems.ms, &path, &own, body.clone())
                                .await
                                .map_err(|e| ApplyError::MoyskladBatch(e.error().clone())),
                            None => {
                                moysklad::update(&self.systems.ms, entity, &id, body.clone()).await
                            }
                        };
                        self.lookups.ms_wrote(entity, updated.as_ref().ok());
                        let a = updated?;
                        self.note_own_write(entity, &a)?;
                        a
                    }
                    "crm" => crm::update(&self.systems.crm, entity, &id, body.clone()).await?,
                    other => return Err(unknown_system(other)),
                };
                self.note_written(system, entity, &id, &body)?;
                self.note_parent_write(system, entity, id.get("parent"))
                    .await?;
                self.stats.effect("update", system, entity);
                Ok(answer)
            }
            Action::Delete {
                system, entity, id, ..
            } => {
                let id = to_json(&resolve(id, results)?);
                let answer = match &**system {
                    "moysklad" => {
                        self.lookups.ms_wrote(entity, None);
                        let answer = moysklad::delete(&self.systems.ms, entity, &id).await?;
                        // Our own deletion: the audit poll must not report it back (МойСклад
                        // sends no webhook for it either).
                        if !entity.contains('.') && &**entity != "customentity" {
                            if let Some(own) = crate::world::lookups::ms_id(&id) {
                                let now = chrono::Utc::now().timestamp_millis();
                                self.state.set_ms_gone(entity, &own, now)?;
                            }
                        }
                        answer
                    }
                    "crm" => crm::delete(&self.systems.crm, entity, &id).await?,
                    other => return Err(unknown_system(other)),
                };
                self.note_parent_write(system, entity, id.get("parent"))
                    .await?;
                self.stats.effect("delete", system, entity);
                Ok(answer)
            }
            Action::Link { kind, ids } => {
                // The link and the effect's progress commit together: a link is never
                // written without the plan knowing it, nor the other way round.
                let mut link = Link {
                    kind: kind.to_string(),
                    ids: Default::default(),
                };
                for (side, id) in ids {
                    let v = to_json(&resolve(id, results)?);
                    if crate::state::id_text(&v).is_none() {
                        return Err(ApplyError::Invalid(format!(
                            "link {kind}: the {side} id is {v}, not an id"
                        )));
                    }
                    link.ids.insert(side.to_string(), v);
                }
                let answer = link.to_json();
                self.state.link_done(seq, index, &link, &answer)?;
                self.stats.link();
                Ok(answer)
            }
            Action::Journal {
                code,
                level,
                text,
                subject,
            } => {
                let subject = to_json(&resolve(subject, results).unwrap_or_default());
                self.state.journal(
                    JournalEntry {
                        time: run.now,
                        first: run.now,
                        count: 1,
                        direction: direction(&run.event).to_string(),
                        rule: effect.rule.to_string(),
                        code: code.to_string(),
                        level: level.as_str().to_string(),
                        text: text.clone(),
                        subject,
                        raw: Json::Null,
                    },
                    self.journal,
                )?;
                self.stats.journal();
                Ok(Json::Null)
            }
            Action::Task { user, kind, text } => {
                let user = to_json(&resolve(user, results)?);
                self.task(&user, kind, text, &run.now).await
            }
            Action::Skip { reason } => {
                tracing::debug!(rule = %effect.rule, %reason, "skip");
                self.stats.skip();
                Ok(Json::Null)
            }
        }
    }

    /// A write to a МойСклад sub-collection (`counterparty.accounts`, …) changes its parent's
    /// `updated`: read it, so that the poll does not take our own change for someone else's.
    /// Best effort: a failed read only means one more event for the rules.
    async fn note_parent_write(
        &self,
        system: &str,
        entity: &str,
        parent: Option<&Json>,
    ) -> Result<(), StateError> {
        let (Some((base, _)), "moysklad") = (entity.split_once('.'), system) else {
            return Ok(());
        };
        let Some(parent) = parent.and_then(crate::world::lookups::ms_id) else {
            return Ok(());
        };
        match self.systems.ms.get(base, &parent, &[]).await {
            Ok(v) => self.note_own_write(base, &v),
            Err(e) => {
                tracing::debug!(error = %e, "could not read the parent of a sub-collection write");
                Ok(())
            }
        }
    }

    /// Remembers the fields written to an entity (`fetch("runner", "written", …)`, see
    /// docs/contract.md). Writes to sub-collections (`{parent, id}` ids) are not remembered.
    fn note_written(
        &self,
        system: &str,
        entity: &str,
        id: &Json,
        body: &Json,
    ) -> Result<(), StateError> {
        let Some(id) = crate::state::id_text(id) else {
            return Ok(());
        };
        self.state.note_written(
            &format!("{system}.{entity}/{id}"),
            body,
            crate::daemon::now_ms(),
        )
    }

    /// Records our write to a МойСклад entity so that the poll does not take it for news —
    /// unless the version a rule last read of it was one nobody has evaluated (someone else
    /// changed the entity and its webhook was lost or is still queued): our write then carries
    /// that change along, and the poll must still deliver it, or it would be lost.
    fn note_own_write(&self, entity: &str, answer: &Json) -> Result<(), StateError> {
        if let Some((e, id, updated)) = moysklad::own_write(entity, answer) {
            let read = self.state.ms_read(&e, &id)?;
            let unseen = read.as_ref().is_some_and(|r| {
                self.state.ms_seen(&e, &id).ok().flatten().as_ref() != Some(r)
                    && self.state.ms_own(&e, &id).ok().flatten().as_ref() != Some(r)
            });
            if unseen {
                tracing::debug!(entity = %e, %id, "our write follows an unseen change: the poll will deliver it");
                self.state.clear_ms_own(&e, &id)?;
            } else {
                self.state.set_ms_own(&e, &id, &updated)?;
            }
        }
        Ok(())
    }

    /// An idempotent create (see the module docs).
    async fn create(
        &self,
        system: &str,
        entity: &str,
        key: Option<&str>,
        auto_key: &str,
        mut body: Json,
    ) -> Result<Json, ApplyError> {
        let k = key.unwrap_or(auto_key).to_string();
        // Plans are applied side by side: two creates with one key never run at once.
        let _hold = self.batch.hold_key(&k).await;
        let target = format!("{system}.{entity}");
        let native = match system {
            "moysklad" => {
                moysklad::add_sync_id(entity, &mut body, &k);
                body.get("syncId").is_some()
            }
            "crm" => {
                if let Some(key) = key {
                    crm::add_external_id(entity, &mut body, key);
                }
                matches!(entity, "order" | "customer" | "customer_corporate")
                    && body.get("externalId").is_some_and(|x| !x.is_null())
            }
            other => return Err(unknown_system(other)),
        };
        match self.state.key(&k)? {
            Some(KeyRecord::Done { result, .. }) if !native => {
                tracing::debug!(key = %k, %target, "create already confirmed");
                return Ok(result);
            }
            Some(KeyRecord::InFlight { .. }) => {
                if let Some(found) = self.lookup_by_key(system, entity, &body).await? {
                    tracing::info!(key = %k, %target, "create with an unknown outcome found by its key");
                    return self.confirmed(&k, &target, entity, system, found);
                }
            }
            _ => {}
        }
        self.state.set_key(
            &k,
            &KeyRecord::InFlight {
                target: target.clone(),
                at: crate::daemon::now_ms(),
            },
        )?;
        let sent = match system {
            "moysklad" => match moysklad::bulk_path(entity, &body) {
                Some(path) => self
                    .batch
                    .create(&self.systems.ms, &path, body.clone())
                    .await
                    .map_err(|e| ApplyError::MoyskladBatch(e.error().clone())),
                None => {
                    moysklad::create(
                        &self.systems.ms,
                        entity,
                        body.clone(),
                        self.webhook_url.as_deref(),
                    )
                    .await
                }
            },
            _ => crm::create(&self.systems.crm, entity, body.clone()).await,
        };
        match sent {
            Ok(answer) => self.confirmed(&k, &target, entity, system, answer),
            Err(e) if e.outcome_unknown() || (system == "crm" && crm::is_duplicate(&e)) => {
                match self.lookup_by_key(system, entity, &body).await {
                    Ok(Some(found)) => self.confirmed(&k, &target, entity, system, found),
                    _ => Err(e),
                }
            }
            Err(e) => {
                if !e.outcome_unknown() && e.class() != FailureClass::Transient {
                    self.state.clear_key(&k)?;
                }
                Err(e)
            }
        }
    }

    fn confirmed(
        &self,
        key: &str,
        target: &str,
        entity: &str,
        system: &str,
        answer: Json,
    ) -> Result<Json, ApplyError> {
        self.state.set_key(
            key,
            &KeyRecord::Done {
                target: target.to_string(),
                result: answer.clone(),
                at: crate::daemon::now_ms(),
            },
        )?;
        if system == "moysklad" {
            self.note_own_write(entity, &answer)?;
            if matches!(entity, "customentity" | "service" | "store" | "employee") {
                self.refs.clear();
            }
        }
        Ok(answer)
    }

    async fn lookup_by_key(
        &self,
        system: &str,
        entity: &str,
        body: &Json,
    ) -> Result<Option<Json>, ApplyError> {
        match system {
            "moysklad" => {
                moysklad::lookup_by_key(&self.systems.ms, entity, body, self.webhook_url.as_deref())
                    .await
            }
            _ => crm::lookup_by_key(&self.systems.crm, entity, body).await,
        }
    }

    /// One open CRM task per problem kind.
    async fn task(
        &self,
        user: &Json,
        kind: &str,
        text: &str,
        now: &i64,
    ) -> Result<Json, ApplyError> {
        if user.is_null() {
            tracing::debug!(kind, "task without a user: nobody to notify");
            self.stats.skip();
            return Ok(Json::Null);
        }
        if let Some(rec) = self.state.task(kind)? {
            match rec.id {
                Some(id) if crm::task_open(&self.systems.crm, id).await? => {
                    return Ok(json!({"id": id}));
                }
                _ => self.state.clear_task(kind)?,
            }
        }
        let body = json!({"text": text, "performerId": user});
        let answer = self
            .create("crm", "task", None, &format!("task:{kind}:{now}"), body)
            .await?;
        let id = answer.get("id").and_then(Json::as_i64);
        self.state.set_task(kind, &TaskRecord { id, at: *now })?;
        self.stats.effect("create", "crm", "task");
        Ok(answer)
    }
}

fn unknown_system(s: &str) -> ApplyError {
    ApplyError::Invalid(format!("unknown system `{s}` (crm or moysklad)"))
}

fn effect_name(e: &Effect) -> Option<&str> {
    match &e.action {
        Action::Create { name, .. } | Action::Update { name, .. } => name.as_deref(),
        _ => None,
    }
}

fn effect_optional(e: &Effect) -> bool {
    match &e.action {
        Action::Create { optional, .. }
        | Action::Update { optional, .. }
        | Action::Delete { optional, .. } => *optional,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skladsync_engine::value::PendingRef;

    #[test]
    fn references_resolve_into_answers() {
        let mut results = HashMap::new();
        results.insert(
            "ms_order".to_string(),
            from_json(&json!({"id": "a-1", "meta": {"href": "h"}, "rows": [1, 2]})),
        );
        let body =
            from_json(&json!({"x": {"$ref": "ms_order.meta"}, "y": [{"$ref": "ms_order.rows.1"}]}));
        let out = to_json(&resolve(&body, &results).unwrap());
        assert_eq!(out, json!({"x": {"href": "h"}, "y": [2]}));
        let missing = Value::Ref(Arc::new(PendingRef::parse("other.id").unwrap()));
        assert!(resolve(&missing, &results).is_err());
    }

    #[test]
    fn sync_ids_are_deterministic_uuids() {
        assert_eq!(sync_id("order-7"), sync_id("order-7"));
        assert_ne!(sync_id("order-7"), sync_id("order-8"));
        assert!(uuid::Uuid::parse_str(&sync_id("x")).is_ok());
    }
}
