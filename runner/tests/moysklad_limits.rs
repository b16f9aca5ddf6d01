//! The request budget: the emulator's 429s and headers, and the client waiting them out and
//! adapting to the headers.

use std::time::Duration;

use serde_json::Value;
use skladsync_emulators::faults::{Fault, FaultPlan};
use skladsync_emulators::moysklad::{MoyskladEmulator, MoyskladEmulatorConfig, RateLimitConfig};
use skladsync_runner::clients::moysklad::{
    Auth, ClientConfig, LimitConfig, ListQuery, MoyskladClient, RetryPolicy,
};

const LOGIN: &str = "admin@emulator";
const PASSWORD: &str = "emulator-password";

async fn emulator(limits: RateLimitConfig) -> MoyskladEmulator {
    MoyskladEmulator::start(MoyskladEmulatorConfig {
        rate_limit: Some(limits),
        ..MoyskladEmulatorConfig::default()
    })
    .await
    .expect("emulator")
}

fn client(ms: &MoyskladEmulator, limits: LimitConfig) -> MoyskladClient {
    MoyskladClient::new(
        ClientConfig::new(Auth::basic(LOGIN, PASSWORD))
            .base_url(ms.base_url())
            .limits(limits)
            .retry(RetryPolicy {
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(200),
                max_rate_limit_waits: 200,
                ..RetryPolicy::default()
            }),
    )
    .expect("client")
}

fn count_status(ms: &MoyskladEmulator, status: u16) -> usize {
    ms.requests().iter().filter(|r| r.status == status).count()
}

async fn burst(c: &MoyskladClient, n: usize) -> Vec<bool> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let c = c.clone();
        set.spawn(async move { c.list("store", &ListQuery::new()).await.is_ok() });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap_or(false));
    }
    out
}

#[tokio::test]
async fn emulator_sends_the_documented_headers_and_429_body() {
    let ms = emulator(RateLimitConfig {
        units: 3,
        window: Duration::from_millis(3000),
        request_weight: 1,
        ..RateLimitConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let get = || {
        http.get(format!("{}/entity/store", ms.base_url()))
            .basic_auth(LOGIN, Some(PASSWORD))
            .send()
    };
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = get().await.expect("response");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit"], "3");
        assert_eq!(r.headers()["x-lognex-retry-timeinterval"], "3000");
        assert_eq!(r.headers()["x-lognex-retry-after"], "0");
        remaining.push(
            r.headers()["x-ratelimit-remaining"]
                .to_str()
                .expect("ascii")
                .to_string(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = get().await.expect("response");
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["x-lognex-retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("millis");
    assert!(
        wait > 0 && wait <= 1000,
        "about one unit's refill time: {wait}"
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], 1049);
}

#[tokio::test]
async fn stock_reports_weigh_five_units() {
    let ms = emulator(RateLimitConfig {
        units: 10,
        window: Duration::from_secs(30),
        ..RateLimitConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let report = || {
        http.get(format!("{}/report/stock/all", ms.base_url()))
            .basic_auth(LOGIN, Some(PASSWORD))
            .send()
    };
    let r = report().await.expect("first");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "5");
    let r = report().await.expect("second");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(report().await.expect("third").status(), 429);
    // The short current report is an ordinary request.
    let ms2 = emulator(RateLimitConfig {
        units: 10,
        window: Duration::from_secs(30),
        ..RateLimitConfig::default()
    })
    .await;
    let r = http
        .get(format!("{}/report/stock/all/current", ms2.base_url()))
        .basic_auth(LOGIN, Some(PASSWORD))
        .send()
        .await
        .expect("current");
    // 10 - 4: an ordinary request with a login/password since 2026-12-01.
    assert_eq!(r.headers()["x-ratelimit-remaining"], "6");
}

/// A request made with a login/password (or a user token) weighs 4 units; one made with a
/// published solution's token 1; a stock report 5 whatever the credentials.
#[tokio::test]
async fn requests_weigh_by_credential_kind() {
    use skladsync_emulators::moysklad::EmulatorUser;
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig {
        users: vec![
            EmulatorUser::new(LOGIN, PASSWORD).with_token("user-token"),
            EmulatorUser::new("app@emulator", "unused")
                .with_token("solution-token")
                .as_solution(),
        ],
        ..MoyskladEmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let http = reqwest::Client::new();
    let remaining = |r: &reqwest::Response| -> String {
        r.headers()["x-ratelimit-remaining"]
            .to_str()
            .expect("ascii")
            .to_string()
    };
    let url = format!("{}/entity/store", ms.base_url());
    let r = http
        .get(&url)
        .basic_auth(LOGIN, Some(PASSWORD))
        .send()
        .await
        .expect("basic");
    assert_eq!(r.headers()["x-ratelimit-limit"], "45");
    assert_eq!(remaining(&r), "41");
    let r = http
        .get(&url)
        .bearer_auth("user-token")
        .send()
        .await
        .expect("user token");
    // The same user's bucket: 41 - 4 (give or take a refilled unit).
    assert!(
        ["37", "38"].contains(&remaining(&r).as_str()),
        "{}",
        remaining(&r)
    );
    let r = http
        .get(&url)
        .bearer_auth("solution-token")
        .send()
        .await
        .expect("solution");
    assert_eq!(remaining(&r), "44");
    let r = http
        .get(format!("{}/report/stock/bystore", ms.base_url()))
        .bearer_auth("solution-token")
        .send()
        .await
        .expect("report");
    assert!(
        ["39", "40"].contains(&remaining(&r).as_str()),
        "{}",
        remaining(&r)
    );
}

/// The client's default budget is the 2026 one: a burst of more requests than one window
/// holds at weight 4 is spread out and never pushed back.
#[tokio::test]
async fn the_default_client_never_trips_the_2026_budget() {
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig::default())
        .await
        .expect("emulator");
    let c = MoyskladClient::new(
        ClientConfig::new(Auth::basic(LOGIN, PASSWORD)).base_url(ms.base_url()),
    )
    .expect("client");
    assert!(burst(&c, 14).await.iter().all(|ok| *ok));
    assert_eq!(count_status(&ms, 200), 14);
    assert_eq!(count_status(&ms, 429), 0, "{:?}", ms.requests());
}

#[tokio::test]
async fn a_burst_gets_429s_and_the_client_waits_them_out() {
    let ms = emulator(RateLimitConfig {
        units: 3,
        window: Duration::from_millis(300),
        request_weight: 1,
        ..RateLimitConfig::default()
    })
    .await;
    // The client trusts a budget (45 units per 300 ms) that this emulator does not grant.
    let c = client(
        &ms,
        LimitConfig {
            window: Duration::from_millis(300),
            request_weight: 1,
            adapt: false,
            ..LimitConfig::default()
        },
    );
    let results = burst(&c, 20).await;
    assert_eq!(results.len(), 20);
    assert!(
        results.iter().all(|ok| *ok),
        "every request succeeded in the end"
    );
    assert!(count_status(&ms, 429) >= 1, "the emulator did push back");
    assert_eq!(count_status(&ms, 200), 20);
    assert!(c.limiter().snapshot().pauses >= 1);
}

#[tokio::test]
async fn the_client_adapts_to_the_headers_instead_of_its_constants() {
    let limits = RateLimitConfig {
        units: 5,
        window: Duration::from_millis(500),
        request_weight: 1,
        ..RateLimitConfig::default()
    };
    let documented = LimitConfig {
        window: Duration::from_millis(500),
        request_weight: 1,
        ..LimitConfig::default()
    };
    // Learns the real (smaller) budget from the first response.
    let ms = emulator(limits.clone()).await;
    let adaptive = client(&ms, documented.clone());
    adaptive
        .list("store", &ListQuery::new())
        .await
        .expect("first");
    let s = adaptive.limiter().snapshot();
    assert_eq!(s.capacity, 5);
    assert_eq!(s.window, Duration::from_millis(500));
    assert!(
        s.tokens <= 4.5,
        "remaining taken from the header: {}",
        s.tokens
    );
    assert!(burst(&adaptive, 20).await.iter().all(|ok| *ok));
    let adaptive_429 = count_status(&ms, 429);

    // The same burst from a client that trusts its constants gets pushed back far more.
    let ms = emulator(limits).await;
    let stubborn = client(
        &ms,
        LimitConfig {
            adapt: false,
            ..documented
        },
    );
    stubborn
        .list("store", &ListQuery::new())
        .await
        .expect("first");
    assert!(burst(&stubborn, 20).await.iter().all(|ok| *ok));
    let stubborn_429 = count_status(&ms, 429);
    assert!(
        adaptive_429 < stubborn_429,
        "adaptive {adaptive_429} vs constant {stubborn_429} rejections"
    );
}

#[tokio::test]
async fn parallel_limit_gives_1073_and_the_client_recovers() {
    let limits = RateLimitConfig {
        units: 1000,
        max_parallel: 2,
        ..RateLimitConfig::default()
    };
    let ms = emulator(limits).await;
    // Slow responses so that requests overlap; the slot is held during the delay.
    ms.faults().set(FaultPlan::new(Fault::Latency {
        delay: Duration::from_millis(300),
    }));
    let http = reqwest::Client::new();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let req = http
            .get(format!("{}/entity/store", ms.base_url()))
            .basic_auth(LOGIN, Some(PASSWORD));
        set.spawn(async move {
            let r = req.send().await.expect("response");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body["errors"][0]["code"].as_u64())
        });
    }
    let mut codes = Vec::new();
    while let Some(r) = set.join_next().await {
        codes.push(r.expect("task"));
    }
    assert!(codes.iter().filter(|(s, _)| *s == 200).count() >= 2);
    assert!(codes.contains(&(429, Some(1073))), "{codes:?}");
    assert!(codes
        .iter()
        .all(|(s, c)| *s == 200 || (*s == 429 && *c == Some(1073))));

    // A client allowed 5 in flight against a server allowing 2 gets pushed back but still
    // gets everything done.
    ms.faults().set(FaultPlan::new(Fault::Latency {
        delay: Duration::from_millis(50),
    }));
    ms.clear_requests();
    let c = client(&ms, LimitConfig::default());
    assert!(burst(&c, 10).await.iter().all(|ok| *ok));
    assert!(count_status(&ms, 429) >= 1);
    assert_eq!(count_status(&ms, 200), 10);
    // A client configured with the server's cap never trips it.
    ms.clear_requests();
    let polite = client(
        &ms,
        LimitConfig {
            max_in_flight: 2,
            ..LimitConfig::default()
        },
    );
    assert!(burst(&polite, 10).await.iter().all(|ok| *ok));
    assert_eq!(count_status(&ms, 429), 0);
}
