//! A fault at every effect of every case: each plan of the default rules' cases
//! (`tests/cases/**`) is applied against a scripted transport with one fault injected at the
//! k-th write — a 500, a connection dropped before anything is committed, or a write committed
//! and its answer dropped — for every k; the runner then resumes the plan as the daemon does
//! (from the effect that failed, never by evaluating again). The writes that took effect must
//! equal those of the run without faults, in the same order: nothing missing, nothing twice;
//! and the links recorded must be the same.
//!
//! One repetition is allowed, because it changes nothing: an update or delete whose answer
//! was lost is sent again as it was (`PUT`/`DELETE` on МойСклад, `…/edit`, `…/delete` and the
//! stock upload on retailCRM are idempotent). A create is never repeated: its key is looked
//! up first.

#[path = "fixtures/scripted/mod.rs"]
mod scripted;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scripted::{Fault, Script};
use skladsync_engine::{Case, Plan, RuleSet};
use skladsync_runner::apply::{Applier, FailureClass, Outcome, PlanRun, Stats};
use skladsync_runner::clients::moysklad::{
    self as ms, Auth, LimitConfig, MoyskladClient, RetryPolicy as MsRetry,
};
use skladsync_runner::clients::retailcrm::{self as crm, RetailcrmClient, RetryPolicy};
use skladsync_runner::demo::pg_cluster::PgCluster;
use skladsync_runner::state::{JournalLimits, Link, Outbox, PgDatabase, SyncState};
use skladsync_runner::world::{ReferenceCache, Systems};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn default_rules() -> RuleSet {
    let (rules, _) = RuleSet::load(
        &root().join("rules"),
        Some(&root().join("rules/settings.example.yaml")),
    )
    .unwrap_or_else(|d| panic!("the default rules do not load:\n{}", d.render(false)));
    rules
}

fn case_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("cases dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            case_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

/// Every case's plan that has at least one effect, by case name.
fn plans() -> Vec<(String, Plan)> {
    let rules = default_rules();
    let dir = root().join("tests/cases");
    let mut files = Vec::new();
    case_files(&dir, &mut files);
    files.sort();
    assert!(
        files.len() > 100,
        "the cases were not found in {}",
        dir.display()
    );
    files
        .iter()
        .filter_map(|p| {
            let case = Case::load(p).unwrap_or_else(|e| panic!("{e}"));
            let plan = case.run(&rules).ok()?;
            let name = p.strip_prefix(&dir).unwrap_or(p).display().to_string();
            (!plan.effects.is_empty()).then_some((name, plan))
        })
        .collect()
}

/// Clients that do not retry by themselves: every injected fault reaches the runner.
fn systems(base: &str) -> Systems {
    let crm_cfg = crm::ClientConfig::new(base, "scripted-key")
        .expect("crm config")
        .with_rate_limit(NonZeroU32::new(10_000))
        .with_retry(RetryPolicy {
            max_attempts: 1,
            rate_limit_attempts: 1,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        })
        .with_timeout(Duration::from_secs(10));
    let ms_cfg = ms::ClientConfig::new(Auth::bearer("scripted-token"))
        .base_url(format!("{base}/api/remap/1.2"))
        .retry(MsRetry {
            max_attempts: 1,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            max_rate_limit_waits: 1,
        })
        .limits(LimitConfig {
            units: 1_000_000,
            max_in_flight: 64,
            adapt: false,
            ..LimitConfig::default()
        })
        .timeout(Duration::from_secs(10));
    Systems {
        crm: RetailcrmClient::new(crm_cfg).expect("crm client"),
        ms: MoyskladClient::new(ms_cfg).expect("ms client"),
    }
}

/// How applying ended, after the runner's own resumptions.
#[derive(Debug, PartialEq)]
struct End {
    /// Writes committed, in order.
    writes: Vec<String>,
    /// Links recorded.
    links: Vec<Link>,
    /// A failure that ended the plan (the runner would give up): its class.
    gave_up: Option<String>,
}

/// Applies `plan` as the daemon does: recorded first, resumed after every transient failure.
async fn apply(
    systems: &Systems,
    script: &Script,
    plan: &Plan,
    fault: Option<(u64, Fault)>,
    new_state: &dyn Fn() -> SyncState,
) -> End {
    script.reset(fault);
    let state = new_state();
    let applier = Applier {
        systems: systems.clone(),
        state: state.clone(),
        refs: Arc::new(ReferenceCache::new(Duration::from_secs(600))),
        webhook_url: None,
        journal: JournalLimits::default(),
        stats: Arc::new(Stats::default()),
        stop: Arc::new(AtomicBool::new(false)),
        orders: Arc::default(),
        customers: Arc::default(),
        lookups: Arc::default(),
        batch: Arc::default(),
    };
    let seq = state
        .enqueue(skladsync_runner::state::Work::SettingsSaved, 0)
        .expect("enqueue");
    let outbox = Outbox {
        seq,
        plan: plan.clone(),
        started: 0,
        done: BTreeMap::new(),
        rules: String::new(),
    };
    state.start_plan(&outbox).expect("start plan");
    let run = PlanRun {
        event: plan.event.clone(),
        work: "case".into(),
        now: 0,
    };
    let mut gave_up = None;
    for attempt in 0.. {
        let ob = state
            .plan(seq)
            .expect("plan")
            .expect("the plan is recorded");
        match applier.apply(&run, ob).await.expect("state") {
            Outcome::Applied { .. } => break,
            Outcome::Interrupted { .. } => panic!("nobody asked to stop"),
            Outcome::Failed(f) if f.class == FailureClass::Transient && attempt < 5 => continue,
            Outcome::Failed(f) => {
                gave_up = Some(format!("{:?} at effect {}: {}", f.class, f.index, f.text));
                break;
            }
        }
    }
    let mut writes = script.log();
    // An idempotent write sent again right after itself (its answer was lost) counts once.
    writes.dedup_by(|later, earlier| later == earlier && idempotent(later));
    let mut links = state.links().expect("links");
    links.sort_by_key(|l| serde_json::to_string(l).unwrap_or_default());
    End {
        writes,
        links,
        gave_up,
    }
}

/// Whether a logged write is an update or delete (repeating it changes nothing).
fn idempotent(write: &str) -> bool {
    write.starts_with("PUT ms/")
        || write.starts_with("DELETE ms/")
        || write.starts_with("POST crm/store/inventories/upload")
        || (write.starts_with("POST crm/")
            && write
                .split(' ')
                .nth(1)
                .is_some_and(|p| p.contains("/edit") || p.contains("/delete")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_at_every_write_of_every_case_ends_as_the_run_without_faults() {
    fault_at_every_write(&SyncState::in_memory, true).await;
}

/// The same with the state in PostgreSQL (a pair of its own for every run, one database):
/// one fault at every write, the kinds taking turns (every kind at a third of the writes),
/// to keep within the test-time budget (each run's state calls are round trips).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_at_every_write_ends_as_without_faults_with_the_state_in_postgresql() {
    let cluster = PgCluster::shared().unwrap_or_else(|e| panic!("{e}"));
    let db = PgDatabase::connect(&cluster.database("plan_faults").expect("database"), 2)
        .expect("database");
    let n = AtomicUsize::new(0);
    fault_at_every_write(
        &|| {
            let pair = format!("run-{}", n.fetch_add(1, Ordering::SeqCst));
            SyncState::open_pg(&db, &pair).expect("state")
        },
        false,
    )
    .await;
}

/// Every kind of fault at every write (`every_kind`), or one kind per write in turn.
async fn fault_at_every_write(new_state: &dyn Fn() -> SyncState, every_kind: bool) {
    let script = Script::default();
    let addr = scripted::serve(script.clone()).await;
    let systems = systems(&format!("http://{addr}"));
    let plans = plans();
    let (mut runs, mut writes_total, mut problems) = (0usize, 0u64, Vec::new());
    for (name, plan) in &plans {
        let clean = apply(&systems, &script, plan, None, new_state).await;
        let writes = script.writes();
        writes_total += writes;
        for k in 1..=writes {
            let kinds: Vec<Fault> = if every_kind {
                Fault::ALL.to_vec()
            } else {
                vec![Fault::ALL[usize::try_from(k).unwrap_or(0) % Fault::ALL.len()]]
            };
            for fault in kinds {
                let end = apply(&systems, &script, plan, Some((k, fault)), new_state).await;
                runs += 1;
                assert!(script.fired(), "{name}: write {k} ({fault:?}) never came");
                if end != clean {
                    problems.push(format!(
                        "{name}: {fault:?} at write {k} of {writes}:\n  without faults: {:#?}\n  with the fault: {:#?}",
                        clean, end
                    ));
                }
            }
        }
    }
    eprintln!(
        "{} case plans, {writes_total} writes, {runs} runs with a fault",
        plans.len()
    );
    assert!(
        writes_total > 100,
        "too few writes to mean anything: {writes_total}"
    );
    assert!(
        problems.is_empty(),
        "{} of {runs} faulty runs ended elsewhere:\n{}",
        problems.len(),
        problems
            .iter()
            .take(std::env::var("SHOW_ALL").map_or(5, |_| 10_000))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
