//! The infrastructure is real: the migrations against PostgreSQL, a round trip through
//! the Kafka broker.

use std::time::Duration;

use futures::StreamExt;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tests::{brokers, reader, scratch_db, scratch_topic};
use uuid::Uuid;

#[tokio::test]
async fn migrations_create_the_schemas_constraints_index_and_trigger() -> anyhow::Result<()> {
    let db = scratch_db().await;
    let client = db.connect().await?;

    let schemas: Vec<String> = client
        .query("SELECT nspname::text FROM pg_namespace WHERE nspname IN ('users','auth','consumer') ORDER BY 1", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(schemas, ["auth", "consumer", "users"]);

    // Each outbox row records its transaction (the relay's windows are made of those),
    // and the relay's state starts with nothing published.
    let default: Option<String> = client
        .query_one(
            "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef d JOIN pg_attribute a \
             ON a.attrelid = d.adrelid AND a.attnum = d.adnum \
             WHERE d.adrelid = 'users.outbox'::regclass AND a.attname = 'xact_id'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(default.as_deref(), Some("pg_current_xact_id()"));
    let state = client
        .query_one(
            "SELECT published::text, window_snapshot IS NULL, epoch FROM users.outbox_relay",
            &[],
        )
        .await?;
    assert_eq!(state.get::<_, String>(0), "3:3:");
    assert!(state.get::<_, bool>(1));
    assert_eq!(state.get::<_, i64>(2), 0);

    // Email uniqueness ignores case; the violation names the constraint.
    let insert =
        "INSERT INTO users.users (id, email, phone, password_hash, first_name, last_name) \
                  VALUES (gen_random_uuid(), $1, $2, 'x', 'A', 'B')";
    client
        .execute(insert, &[&"Ada@Example.com", &"+4912345678"])
        .await?;
    let err = client
        .execute(insert, &[&"ada@example.COM", &None::<String>])
        .await
        .unwrap_err();
    assert_eq!(
        err.as_db_error().and_then(|e| e.constraint()),
        Some("users_email_key")
    );
    let err = client
        .execute(insert, &[&"other@example.com", &"+4912345678"])
        .await
        .unwrap_err();
    assert_eq!(
        err.as_db_error().and_then(|e| e.constraint()),
        Some("users_phone_key")
    );

    // The trigger notifies the relay's channel once per inserting statement.
    let listener = db.pg_config();
    let (listen_client, mut connection) = listener.connect(tokio_postgres::NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    tokio::spawn(stream.for_each(move |msg| {
        if let Ok(tokio_postgres::AsyncMessage::Notification(n)) = msg {
            let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
        }
        futures::future::ready(())
    }));
    listen_client
        .batch_execute(&format!("LISTEN {}", migrations::OUTBOX_CHANNEL))
        .await?;
    client
        .batch_execute(
            "INSERT INTO users.outbox (event_id, aggregate_type, aggregate_id, event_type, topic, payload) \
             SELECT gen_random_uuid(), 'user', 'a', 'UserRegistered', 't', '{}' FROM generate_series(1, 3)",
        )
        .await?;
    // A marker notified by a later transaction comes after every notification of the
    // insert (PostgreSQL delivers them in commit order), so what precedes it is all the
    // insert sent.
    let marker = format!("marker-{}", Uuid::new_v4().simple());
    client
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&migrations::OUTBOX_CHANNEL, &marker],
        )
        .await?;
    let mut before_marker = Vec::new();
    loop {
        let (channel, payload) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await?
            .expect("the listener runs");
        assert_eq!(channel, migrations::OUTBOX_CHANNEL);
        if payload == marker {
            break;
        }
        before_marker.push(payload);
    }
    // One statement of three rows: one notification, not three.
    assert_eq!(before_marker.len(), 1, "{before_marker:?}");
    Ok(())
}

#[tokio::test]
async fn migrations_are_recorded_and_idempotent() -> anyhow::Result<()> {
    let db = scratch_db().await;
    let mut client = db.connect().await?;
    let known: Vec<u32> = migrations::known().into_iter().map(|(v, _)| v).collect();
    assert_eq!(migrations::applied(&mut client).await?, known);
    let again = migrations::run(&mut client).await?;
    assert!(again.applied_migrations().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_record_goes_through_the_real_broker() -> anyhow::Result<()> {
    let topic = scratch_topic(3).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .create()?;
    let delivered = producer
        .send(
            FutureRecord::to(&topic).key("user-1").payload("hello"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    let (partition, offset) = (delivered.partition, delivered.offset);

    let consumer = reader(&topic);
    let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv()).await??;
    assert_eq!(message.key(), Some(&b"user-1"[..]));
    assert_eq!(message.payload(), Some(&b"hello"[..]));
    assert_eq!((message.partition(), message.offset()), (partition, offset));
    Ok(())
}

#[tokio::test]
async fn outside_development_a_superuser_db_user_is_refused_and_a_service_role_is_not(
) -> anyhow::Result<()> {
    let db = scratch_db().await;
    // The suite's server user is the superuser `postgres`.
    let refused = db
        .check_at_start(true)
        .await
        .expect_err("a superuser is refused");
    assert!(refused.fatal);
    let message = refused.to_string();
    assert!(
        message.contains("DB_USER=postgres is a superuser")
            && message.contains("migrate passwords"),
        "{message}"
    );
    db.check_at_start(false).await?; // development allows it

    tests::stack::set_role_passwords(&db).await?;
    let mut role = db.clone();
    role.db_user = "bff".into();
    role.db_password = secrecy::SecretString::from(tests::stack::ROLE_PASSWORD);
    role.check_at_start(true).await?;
    Ok(())
}
