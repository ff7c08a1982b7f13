//! Several replicas benchmark: the suite in microservice mode as separate processes
//! (two `telehealth serve <part>` per service, `telehealth serve gateway`), on PostgreSQL and the
//! S3 store (Garage), exactly as the `replicas` integration test runs it.
//!
//! `eval "$(.ci/start-garage)"; cargo bench --bench replicas` (PostgreSQL from
//! `TELEHEALTH_TEST_POSTGRES_URL`; `-- --seconds N` per phase, default 5).
//!
//! 1. A read (`ListFreeSlots`, one practitioner, one day) and a light write (`CreateDraft` of a
//!    tele-expertise request) through a gateway process in front of ONE instance of each service,
//!    then through the gateway in front of TWO: calls/s, p50 and p99. Everything shares this
//!    machine's cores, so two replicas cannot add throughput; the point is that nothing breaks
//!    and latency stays within 1.5x.
//! 2. SIGKILL of a scheduling instance, then of an expertise instance, during 8-client traffic
//!    through the two-replica gateway: how many calls fail, and the time from the kill to the
//!    last failed call (after it, the gateway sends nothing to the dead instance).
//!
//! Measured on the 2-core reference machine (2026-11-27, default 5 s, other builds running:
//! load average 3-5), two runs: reads 2,070 / 1,728 calls/s with one replica against 1,703 /
//! 1,544 with two, p50 ratio 1.22 / 1.20; drafts 680 / 658 calls/s against 630 / 695, p50
//! ratio 1.12 / 0.98 (p99 of every phase 10-36 ms). SIGKILL: 5-7 calls failed (UNAVAILABLE, the
//! ones in flight on the killed instance), the last 7-10 ms after the kill; none after.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use telehealth_kit::record::timestamp as ts;
use telehealth_kit::{Part, identity::Role};
use telehealth_proto::v1::{
    self as pb, expertise_service_client::ExpertiseServiceClient,
    scheduling_service_client::SchedulingServiceClient,
};
use telehealth_testkit::cluster::Cluster;
use telehealth_testkit::harness::Bearer;
use telehealth_testkit::measure::percentile;
use tonic::{Status, service::interceptor::InterceptedService, transport::Channel};

const ORG: &str = "cds-bench";
const DOCTOR: &str = "dr-bench";
/// Concurrent closed-loop clients.
const CLIENTS: usize = 8;
/// Client connections to a gateway (clients share them).
const CONNECTIONS: usize = 2;

type Scheduling = SchedulingServiceClient<InterceptedService<Channel, Bearer>>;
type Expertise = ExpertiseServiceClient<InterceptedService<Channel, Bearer>>;

/// Clients of one gateway.
struct Clients {
    scheduling: Vec<Scheduling>,
    expertise: Vec<Expertise>,
}

impl Clients {
    async fn of(cluster: &Cluster, gateway: SocketAddr, bearer: &Bearer) -> Clients {
        let mut clients = Clients {
            scheduling: Vec::new(),
            expertise: Vec::new(),
        };
        for _ in 0..CONNECTIONS {
            let channel = cluster.channel(gateway, "doctor-workstation").await;
            clients
                .scheduling
                .push(SchedulingServiceClient::with_interceptor(
                    channel.clone(),
                    bearer.clone(),
                ));
            clients
                .expertise
                .push(ExpertiseServiceClient::with_interceptor(
                    channel,
                    bearer.clone(),
                ));
        }
        clients
    }
}

/// What closed-loop runs measured.
#[derive(Default)]
struct Outcome {
    calls: usize,
    ok: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    failures: Vec<Instant>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.calls += other.calls;
        self.ok += other.ok;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        self.failures.extend(other.failures);
    }

    fn row(mut self, name: &str) -> (String, Duration) {
        self.latencies.sort_unstable();
        let p50 = percentile(&self.latencies, 0.50);
        let row = format!(
            "| {name} | {} | {} | {:.0} | {:.2} | {:.2} |",
            self.calls,
            self.ok,
            self.calls as f64 / self.elapsed.as_secs_f64(),
            p50.as_secs_f64() * 1000.0,
            percentile(&self.latencies, 0.99).as_secs_f64() * 1000.0,
        );
        (row, p50)
    }
}

/// Runs `CLIENTS` closed loops of `call(worker, n)` for `duration`.
async fn run<F, Fut>(duration: Duration, call: F) -> Outcome
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..CLIENTS {
        let (call, next) = (call.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut latencies, mut failures) = (0, Vec::new(), Vec::new());
            while started.elapsed() < duration {
                let at = Instant::now();
                match call(worker, next.fetch_add(1, Ordering::Relaxed)).await {
                    Ok(()) => ok += 1,
                    Err(_) => failures.push(Instant::now()),
                }
                latencies.push(at.elapsed());
            }
            (ok, latencies, failures)
        }));
    }
    let mut outcome = Outcome {
        calls: 0,
        ok: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        failures: Vec::new(),
    };
    for task in tasks {
        if let Ok((ok, latencies, failures)) = task.await {
            outcome.ok += ok;
            outcome.latencies.extend(latencies);
            outcome.failures.extend(failures);
        }
    }
    outcome.calls = outcome.latencies.len();
    outcome.elapsed = started.elapsed();
    outcome
}

/// The read: free slots of the bench doctor over one day.
fn read(clients: &Clients) -> impl Fn(usize, u64) -> CallFuture + Clone + Send + 'static {
    let scheduling = clients.scheduling.clone();
    let day = tomorrow_at_eight();
    move |worker, _| {
        let mut client = scheduling[worker % scheduling.len()].clone();
        Box::pin(async move {
            client
                .list_free_slots(pb::ListFreeSlotsRequest {
                    practitioner_subjects: vec![DOCTOR.into()],
                    range: Some(pb::TimeRange {
                        start_time: Some(ts(day)),
                        end_time: Some(ts(day + SignedDuration::from_hours(12))),
                    }),
                    duration_minutes: 30,
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .map(|_| ())
        })
    }
}

/// The light write: a tele-expertise draft with its own idempotency key.
fn write(
    clients: &Clients,
    label: String,
) -> impl Fn(usize, u64) -> CallFuture + Clone + Send + 'static {
    let expertise = clients.expertise.clone();
    move |worker, n| {
        let mut client = expertise[worker % expertise.len()].clone();
        let label = label.clone();
        Box::pin(async move {
            client
                .create_draft(pb::CreateDraftRequest {
                    idempotency_key: format!("{label}-{n}"),
                    content: Some(pb::ExpertiseRequestContent {
                        target_org_id: "chu-limoges".into(),
                        specialty: "dermatology".into(),
                        clinical_question: "Lésion pigmentée : avis ?".into(),
                        ..Default::default()
                    }),
                })
                .await
                .map(|_| ())
        })
    }
}

type CallFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

/// Calls through the two-replica gateway while instance 1 of `part` is killed after a second;
/// returns the row and the time from the kill to the last failed call.
async fn kill_during<F, Fut>(
    cluster: &mut Cluster,
    part: Part,
    seconds: u64,
    call: F,
) -> (String, Duration)
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    let traffic = tokio::spawn(run(Duration::from_secs(1 + seconds), call));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = cluster.kill(part, 1);
    let outcome = traffic.await.expect("traffic");
    let switch = outcome
        .failures
        .iter()
        .map(|at| at.saturating_duration_since(killed_at))
        .max()
        .unwrap_or_default();
    let row = format!(
        "| SIGKILL {part}-1 | {} | {} | {} | {:.0} |",
        outcome.calls,
        outcome.calls - outcome.ok,
        if outcome.failures.iter().any(|at| *at < killed_at) {
            "yes (before the kill!)"
        } else {
            "no"
        },
        switch.as_secs_f64() * 1000.0,
    );
    (row, switch)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let started = Instant::now();
    let Some(mut cluster) = Cluster::start(env!("CARGO_BIN_EXE_telehealth").into(), 2).await else {
        return Ok(());
    };
    let one = cluster
        .extra_gateway("gateway-one", &cluster.only_instance(0))
        .await;
    let two = cluster.gateway;
    println!(
        "8 service processes and 2 gateway processes (2 replicas, 1 replica) serving in {:?}",
        started.elapsed()
    );
    let token = cluster.token(DOCTOR, &[Role::Doctor], ORG, None, "doctor-workstation");
    let bearer = Bearer::new(&token);
    let (on_one, on_two) = (
        Clients::of(&cluster, one, &bearer).await,
        Clients::of(&cluster, two, &bearer).await,
    );
    on_two.scheduling[0]
        .clone()
        .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
            practitioner_subject: DOCTOR.into(),
            time_zone: "Europe/Paris".into(),
            weekly_ranges: (1..=7)
                .map(|day| pb::WeeklyRange {
                    day,
                    start_local_time: "08:00".into(),
                    end_local_time: "20:00".into(),
                })
                .collect(),
            buffer_minutes: 0,
            expected_version: 0,
        })
        .await?;

    // Each configuration runs twice, in the order one, two, two, one, so that a drift of the
    // machine (other builds, growing tables) weighs on both alike.
    let half = Duration::from_secs_f64(seconds as f64 / 2.0);
    run(Duration::from_secs(1), read(&on_two)).await; // warm-up
    let mut rows = Vec::new();
    let mut p50s = Vec::new();
    for kind in ["read `ListFreeSlots`", "write `CreateDraft`"] {
        let mut outcomes = [Outcome::default(), Outcome::default()];
        for (round, replicas) in [1, 2, 2, 1].into_iter().enumerate() {
            let clients = if replicas == 1 { &on_one } else { &on_two };
            let outcome = if kind.starts_with("read") {
                run(half, read(clients)).await
            } else {
                run(half, write(clients, format!("draft-{round}"))).await
            };
            outcomes[replicas - 1].merge(outcome);
        }
        let [one, two] = outcomes;
        let (row, one) = one.row(&format!("{kind}, 1 replica"));
        rows.push(row);
        let (row, two) = two.row(&format!("{kind}, 2 replicas"));
        rows.push(row);
        p50s.push((
            kind,
            two.as_secs_f64() / one.as_secs_f64().max(f64::EPSILON),
        ));
    }
    println!();
    println!("{CLIENTS} clients over {CONNECTIONS} connections, {seconds} s per phase");
    println!();
    println!("| phase | calls | succeeded | calls/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!("{row}");
    }
    for (kind, ratio) in p50s {
        println!("{kind}: p50 with 2 replicas / 1 replica = {ratio:.2}");
    }

    let mut kills = Vec::new();
    let read_two = read(&on_two);
    kills.push(kill_during(&mut cluster, Part::Scheduling, 3, read_two).await);
    let write_two = write(&on_two, "kill".into());
    kills.push(kill_during(&mut cluster, Part::Expertise, 3, write_two).await);
    println!();
    println!(
        "| kill during {CLIENTS}-client traffic | calls | failed | failures before the kill | kill → last failed call, ms |"
    );
    println!("|---|---:|---:|---|---:|");
    for (row, _) in &kills {
        println!("{row}");
    }
    println!(
        "(reads of scheduling, drafts of expertise; after the last failure every call went to the survivor)"
    );
    cluster.stop().await;
    Ok(())
}

fn tomorrow_at_eight() -> Timestamp {
    let paris = TimeZone::get("Europe/Paris").expect("tz");
    Timestamp::now()
        .to_zoned_datetime(paris.clone())
        .date()
        .checked_add(jiff::Span::new().days(1))
        .expect("date")
        .at(8, 0, 0, 0)
        .to_zoned_datetime(paris)
        .expect("zoned")
        .timestamp()
}
