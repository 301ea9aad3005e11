//! The cost of the outbox row inside the register transaction: the same transaction with
//! and without `enqueue`, interleaved in one run against a scratch database.
//! `cargo run --release -p user-service --example register_tx [-- ROUNDS]`

use std::time::Instant;

use outbox_relay::platform::db::DbConfig;
use user_service::register::user_registered;
use user_service::users;
use user_service::validation::NewUser;
use uuid::Uuid;

const HASH: &str =
    "$scrypt$ln=17,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

fn user(i: usize, tag: &str) -> NewUser {
    NewUser {
        email: format!("{tag}-{i}@example.com"),
        first_name: "Bench".into(),
        last_name: "User".into(),
        phone: None,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(2000), |a| a.parse())?;
    let server = DbConfig::default();
    let name = format!("test_bench_{}", Uuid::new_v4().simple());
    migrations::create_scratch_database(&server.pg_config(), &name).await?;
    let pool = server.with_database(&name).pool();
    let mut client = pool.get().await?;

    let mut without = Vec::with_capacity(rounds);
    let mut with = Vec::with_capacity(rounds);
    // Warm up the connection and the statement cache first.
    for i in 0..50 {
        let tx = client.transaction().await?;
        let u = users::insert(&tx, &user(i, "warm"), HASH).await?;
        outbox_relay::enqueue(&tx, &user_registered(&u, "user-events", None)).await?;
        tx.commit().await?;
    }
    for i in 0..rounds {
        let started = Instant::now();
        let tx = client.transaction().await?;
        users::insert(&tx, &user(i, "plain"), HASH).await?;
        tx.commit().await?;
        without.push(started.elapsed().as_secs_f64() * 1e3);

        let started = Instant::now();
        user_service::register(&mut client, &user(i, "outbox"), HASH, "user-events", None).await?;
        with.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let (w0, w1) = (stats(&mut without), stats(&mut with));
    println!("register transaction, {rounds} rounds each, interleaved, one connection");
    println!(
        "without outbox row: median {:.3} ms  p95 {:.3} ms  mean {:.3} ms",
        w0.0, w0.1, w0.2
    );
    println!(
        "with outbox row:    median {:.3} ms  p95 {:.3} ms  mean {:.3} ms",
        w1.0, w1.1, w1.2
    );
    println!(
        "outbox row adds:    median {:+.3} ms ({:+.0}%)",
        w1.0 - w0.0,
        (w1.0 / w0.0 - 1.0) * 100.0
    );
    drop(client);
    drop(pool);
    let admin = server.connect().await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
        .await?;
    Ok(())
}

/// (median, p95, mean)
fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (v[v.len() / 2], v[v.len() * 95 / 100], mean)
}
