//! What the outbox row costs the register transaction: the user service's own insert,
//! committed with and without `enqueue`, interleaved on one connection.

use std::time::Instant;

use platform::db::DbConfig;
use serde_json::{json, Value};
use user_service::users;
use user_service::validation::NewUser;

use crate::stats::Latencies;

/// A syntactically valid PHC string: hashing is not what this measures.
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

pub(crate) async fn measure(db: &DbConfig, rounds: usize) -> anyhow::Result<Value> {
    let pool = db.pool();
    let mut client = pool.get().await?;
    let (mut without, mut with) = (Latencies::new(), Latencies::new());
    for i in 0..rounds + 50 {
        let started = Instant::now();
        let tx = client.transaction().await?;
        users::insert(&tx, &user(i, "plain"), HASH).await?;
        tx.commit().await?;
        let plain = started.elapsed();

        let started = Instant::now();
        user_service::register(&mut client, &user(i, "outbox"), HASH, "user-events", None).await?;
        let outbox = started.elapsed();
        // The first rounds warm the connection and the statement cache.
        if i >= 50 {
            without.record_us(plain.as_micros() as u64);
            with.record_us(outbox.as_micros() as u64);
        }
    }
    Ok(json!({
        "p50": crate::stats::round3(with.ms(0.5) - without.ms(0.5)),
        "with_outbox_p50": with.ms(0.5),
        "without_outbox_p50": without.ms(0.5),
        "with_outbox_p99": with.ms(0.99),
        "without_outbox_p99": without.ms(0.99),
        "rounds": rounds,
    }))
}
