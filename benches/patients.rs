//! Patient register benchmark, on SQLite and PostgreSQL, at the register's core (sealing, blind
//! indexes, SQL and audit; no gateway: the gateway's cost is the gateway bench's).
//!
//! `cargo bench --bench patients` (PostgreSQL from `TELEHEALTH_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; `-- --patients N`, default 100000; `-- --sqlite`
//! or `-- --postgres` for one backend).
//!
//! 1. Creating N patients (each with an INS, an address, the duplicate check and an audit
//!    record), 8 concurrent writers: patients/s.
//! 2. Exact search by INS, and by name + birth date, among the N: p50 and p99 over 2,000
//!    searches of random patients.
//! 3. Reading one record: the register's read (visibility, decryption of every sealed field,
//!    status history, audit) against the same row read plainly from the store: p50 of each,
//!    and the decryption alone (opening a fetched row).
//! 4. Database size per patient (SQLite: file size; PostgreSQL: the schema's relations).
//!
//! Targets (issue 15): searches p50 < 10 ms and p99 < 50 ms; decryption < 100 µs over a plain
//! read; ≥ 500 patients/s created.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use telehealth_directory::patients::{
    core::{Created, Register},
    ins::{Ins, InsKind, key_of},
    model::{Address, Contact, IdentityTraits, PatientInput, SearchCriteria, Sex},
    store,
    vault::Vault,
};
use telehealth_kit::{
    Database, Part,
    config::DatabaseSettings,
    identity::{Caller, Identity, Role},
    sealed::KeyRing,
    service_core::ServiceCore,
};
use telehealth_testkit::measure::percentile;

const ORG: &str = "cds-bench";
const WRITERS: usize = 8;
const SEARCHES: usize = 2_000;
const READS: usize = 2_000;

fn caller() -> Caller {
    Caller::Person(Identity {
        subject: "coord-bench".into(),
        roles: vec![Role::Coordinator],
        org: ORG.into(),
        specialty: None,
        cert_thumbprint: "bench".into(),
    })
}

/// The `n`-th patient: a unique name, a birth date among 20,000, a valid INS.
fn patient(n: u64) -> PatientInput {
    let first13 = format!(
        "{}{:02}{:02}{:02}{:03}{:03}",
        1 + n % 2,
        40 + n % 50,
        1 + n % 12,
        23,
        n % 1000,
        n / 1000 % 1000
    );
    let number = format!("{first13}{:02}", key_of(&first13));
    let day = jiff::civil::date(1930, 1, 1) + jiff::Span::new().days((n % 20_000) as i64);
    PatientInput {
        identity: IdentityTraits {
            birth_name: format!("PATIENT{}", letters(n)),
            first_names: "Marie Jeanne".into(),
            used_first_name: "Marie".into(),
            used_name: String::new(),
            sex: Sex::Female,
            birth_date: day,
            birth_place_code: "23096".into(),
        },
        ins: Some(Ins::parse(&number, InsKind::Nir, true).expect("a valid INS")),
        contact: Contact {
            phone: "05 55 00 00 00".into(),
            email: String::new(),
        },
        address: Some(Address {
            lines: vec![format!("{} rue des Tisserands", n % 200 + 1)],
            postal_code: "23400".into(),
            city: "Bourganeuf".into(),
            country: "FR".into(),
            access_note: "digicode 4812B".into(),
        }),
        gp: None,
        care_team: Vec::new(),
    }
}

/// `n` in letters (names hold no digits).
fn letters(mut n: u64) -> String {
    let mut text = String::new();
    loop {
        text.push((b'A' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return text;
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(
    backend: &str,
    db: Database,
    size_of: impl AsyncFnOnce() -> u64,
    count: u64,
) -> anyhow::Result<()> {
    db.migrate(&telehealth_directory::definition().migrations)
        .await?;
    let dir = tempfile::tempdir()?;
    let keys = KeyRing::load_or_create(&dir.path().join("keys"), true)?;
    let register = Register::new(
        ServiceCore::new(db.clone(), Arc::new(jiff::Timestamp::now)),
        Vault::new(keys),
    );
    let caller = caller();

    // 1. Creation.
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS as u64 {
        let (register, caller) = (register.clone(), caller.clone());
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut n = w;
            while n < count {
                match register.create(&caller, patient(n), true).await {
                    Ok(Created::Patient(p)) => ids.push((n, p.id)),
                    Ok(Created::PossibleDuplicates(_)) => {}
                    Err(error) => panic!("patient {n}: {error}"),
                }
                n += WRITERS as u64;
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for writer in writers {
        ids.extend(writer.await?);
    }
    let created = started.elapsed();
    println!(
        "| {backend} | create {count} patients ({WRITERS} writers) | {:.0} patients/s | {:.1} s |",
        ids.len() as f64 / created.as_secs_f64(),
        created.as_secs_f64()
    );

    // 2. Searches.
    let mut by_ins = Vec::with_capacity(SEARCHES);
    let mut by_name = Vec::with_capacity(SEARCHES);
    for i in 0..SEARCHES {
        let (n, id) = &ids[(i * 7919) % ids.len()];
        let input = patient(*n);
        let ins = input.ins.as_ref().expect("INS").number.clone();
        let t = Instant::now();
        let found = register
            .search(
                &caller,
                SearchCriteria {
                    ins: Some(ins),
                    ..Default::default()
                },
                20,
            )
            .await?;
        by_ins.push(t.elapsed());
        assert!(found.iter().any(|p| &p.id == id), "found by INS");
        let t = Instant::now();
        let found = register
            .search(
                &caller,
                SearchCriteria {
                    name: Some(input.identity.birth_name.to_lowercase()),
                    birth_date: Some(input.identity.birth_date),
                    ins: None,
                },
                20,
            )
            .await?;
        by_name.push(t.elapsed());
        assert!(
            found.iter().any(|p| &p.id == id),
            "found by name and birth date"
        );
    }
    for (what, mut latencies) in [
        ("search by INS", by_ins),
        ("search by name + birth date", by_name),
    ] {
        latencies.sort_unstable();
        println!(
            "| {backend} | {what} | p50 {:.2} ms | p99 {:.2} ms |",
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99))
        );
    }

    // 3. Reads: the register's read against a plain read of the same row.
    let vault = Vault::new(KeyRing::load(&dir.path().join("keys"))?);
    let (mut full, mut plain, mut open) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..READS {
        let (_, id) = &ids[(i * 104_729) % ids.len()];
        let t = Instant::now();
        register.get(&caller, id).await?;
        full.push(t.elapsed());
        let t = Instant::now();
        let mut conn = db.pool().acquire().await?;
        let row = store::patient(&mut conn, id).await?.expect("row");
        drop(conn);
        plain.push(t.elapsed());
        let t = Instant::now();
        vault.open_patient(&row)?;
        open.push(t.elapsed());
    }
    for (what, mut latencies) in [
        ("read: register (decrypt, history, audit)", full),
        ("read: the row alone", plain),
        ("decrypt one record (every sealed field)", open),
    ] {
        latencies.sort_unstable();
        println!(
            "| {backend} | {what} | p50 {:.3} ms | p99 {:.3} ms |",
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99))
        );
    }

    // 4. Size.
    let bytes = size_of().await;
    println!(
        "| {backend} | database size | {:.0} bytes/patient | {:.1} MiB in all |",
        bytes as f64 / ids.len() as f64,
        bytes as f64 / 1_048_576.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let count = args
        .iter()
        .position(|a| a == "--patients")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(100_000u64);
    let only_sqlite = args.iter().any(|a| a == "--sqlite");
    let only_postgres = args.iter().any(|a| a == "--postgres");
    println!("| backend | measure | figure | |");
    println!("|---|---|---|---|");
    if !only_postgres {
        let dir = tempfile::tempdir()?;
        let db =
            Database::connect(&DatabaseSettings::default(), dir.path(), Part::Directory).await?;
        let path = dir.path().join("db").join("directory.db");
        let size = async || {
            ["", "-wal"]
                .iter()
                .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
                .map(|m| m.len())
                .sum()
        };
        run("SQLite", db.clone(), size, count).await?;
        db.close().await;
    }
    if !only_sqlite {
        let url = std::env::var("TELEHEALTH_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let prefix = format!("bench{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let settings = DatabaseSettings {
            url: Some(url),
            schema_prefix: prefix.clone(),
            max_connections: 16,
            ..DatabaseSettings::default()
        };
        let dir = tempfile::tempdir()?;
        let db = Database::connect(&settings, dir.path(), Part::Directory).await?;
        let schema = format!("{prefix}directory");
        let sizer = db.clone();
        let size = async move || {
            let mut conn = sizer.pool().acquire().await.expect("connection");
            let bytes: i64 = sqlx::query_scalar(&format!(
                "SELECT CAST(COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS BIGINT) FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = '{schema}' AND c.relkind = 'r'"
            ))
            .fetch_one(&mut *conn)
            .await
            .expect("size");
            bytes as u64
        };
        run("PostgreSQL", db.clone(), size, count).await?;
        let mut conn = db.pool().acquire().await?;
        sqlx::query(&format!("DROP SCHEMA \"{prefix}directory\" CASCADE"))
            .execute(&mut *conn)
            .await
            .ok();
        drop(conn);
        db.close().await;
    }
    Ok(())
}
