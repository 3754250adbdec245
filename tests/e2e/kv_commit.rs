//! The key-value commit in `record_outcomes.lua`, driven with batches as a
//! host sends them, for the cases no single job shows: one batch where a
//! record sets a count that a later record increments, counts near the top,
//! and an outcome recorded twice. Whatever the batch, the script must never
//! fail after its first write: a record whose writes cannot all be applied is
//! held (its entry stays pending) and the others land.

use jobhost::broker::{Delivery, Record, Redis};
use jobhost::envelope::{Envelope, JobType};
use jobhost::keys::QueueKeys;
use jobhost::outcome::Outcome;
use jobhost::plugins::kv::{KvOp, KvWrite};
use jobhost_tests::{RedisServer, done_count, keys, pending_count};

const BUCKET: &str = "jobhost:{default}:kv:counters";

/// `n` jobs on the stream, read through the group: pending, as a host holds them.
fn pending_deliveries(conn: &mut redis::Connection, n: usize) -> Vec<Delivery> {
    let _: Result<(), _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys::STREAM)
        .arg(keys::GROUP)
        .arg("$")
        .arg("MKSTREAM")
        .query(conn);
    let mut deliveries = Vec::new();
    for i in 0..n {
        let job = Envelope::new(
            JobType::parse("kv.test").unwrap(),
            i.to_string().into_bytes(),
        );
        let mut xadd = redis::cmd("XADD");
        xadd.arg(keys::STREAM).arg("*");
        for (name, value) in job.to_fields() {
            xadd.arg(name).arg(value);
        }
        let entry_id: String = xadd.query(conn).unwrap();
        deliveries.push(Delivery {
            entry_id,
            job: Ok(job),
            deliveries: 1,
            bytes: 0,
        });
    }
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(keys::GROUP)
        .arg("tester")
        .arg("COUNT")
        .arg(n)
        .arg("STREAMS")
        .arg(keys::STREAM)
        .arg(">")
        .query(conn)
        .unwrap();
    deliveries
}

fn done(writes: Vec<KvWrite>) -> Outcome {
    Outcome::Done {
        output: Vec::new(),
        follow_ups: Vec::new(),
        kv_writes: writes,
    }
}

fn write(key: &str, op: KvOp) -> KvWrite {
    KvWrite {
        bucket: "counters".into(),
        key: key.into(),
        op,
    }
}

/// Records `outcomes` for `deliveries` in one script call; returns the
/// entry ids held.
fn record(redis_url: &str, deliveries: &[Delivery], outcomes: &[Outcome]) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut redis = Redis::connect(redis_url).await.unwrap();
        let records: Vec<Record<'_>> = deliveries
            .iter()
            .zip(outcomes)
            .map(|(delivery, outcome)| Record {
                delivery,
                outcome,
                now_ms: 0,
            })
            .collect();
        let recorded = redis
            .record(&QueueKeys::new("jobhost", "default"), &records, None)
            .await
            .expect("the script never fails");
        recorded.held.into_iter().map(|h| h.entry_id).collect()
    })
}

fn field(conn: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("HGET").arg(BUCKET).arg(key).query(conn).unwrap()
}

#[test]
fn a_count_set_to_text_earlier_in_the_batch_holds_the_increment_not_the_batch() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let deliveries = pending_deliveries(&mut conn, 3);
    let outcomes = [
        done(vec![write("n", KvOp::Increment(2))]),
        done(vec![write("n", KvOp::Set(b"not a count".to_vec()))]),
        done(vec![
            write("n", KvOp::Increment(1)),
            write("m", KvOp::Increment(1)),
        ]),
    ];
    let held = record(&redis.url(), &deliveries, &outcomes);
    assert_eq!(held, [deliveries[2].entry_id.clone()]);
    assert_eq!(field(&mut conn, "n").as_deref(), Some("not a count"));
    assert_eq!(field(&mut conn, "m"), None, "a held record writes nothing");
    assert_eq!(done_count(&mut conn), 2);
    assert_eq!(pending_count(&mut conn), 1, "the held entry stays pending");
}

#[test]
fn a_count_that_would_overflow_is_held_and_one_that_fits_lands() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let _: () = redis::cmd("HSET")
        .arg(BUCKET)
        .arg("big")
        .arg("9100000000000000000")
        .query(&mut conn)
        .unwrap();
    let deliveries = pending_deliveries(&mut conn, 2);
    let outcomes = [
        done(vec![write("big", KvOp::Increment(200_000_000_000_000_000))]),
        done(vec![write("big", KvOp::Increment(1))]),
    ];
    let held = record(&redis.url(), &deliveries, &outcomes);
    assert_eq!(held, [deliveries[0].entry_id.clone()]);
    assert_eq!(
        field(&mut conn, "big").as_deref(),
        Some("9100000000000000001")
    );
}

#[test]
fn a_batch_recorded_twice_commits_its_writes_once() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let deliveries = pending_deliveries(&mut conn, 2);
    let outcomes = [
        done(vec![
            write("n", KvOp::Increment(5)),
            write("s", KvOp::Set(b"x".to_vec())),
        ]),
        done(vec![
            write("n", KvOp::Increment(1)),
            write("s", KvOp::Delete),
        ]),
    ];
    for _ in 0..2 {
        assert!(record(&redis.url(), &deliveries, &outcomes).is_empty());
    }
    assert_eq!(field(&mut conn, "n").as_deref(), Some("6"));
    assert_eq!(field(&mut conn, "s"), None);
    assert_eq!(done_count(&mut conn), 2);
}

#[test]
fn a_bucket_key_of_another_type_holds_its_writers_only() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let _: () = redis::cmd("SET")
        .arg(BUCKET)
        .arg("x")
        .query(&mut conn)
        .unwrap();
    let deliveries = pending_deliveries(&mut conn, 2);
    let outcomes = [done(vec![write("n", KvOp::Increment(1))]), done(Vec::new())];
    let held = record(&redis.url(), &deliveries, &outcomes);
    assert_eq!(held, [deliveries[0].entry_id.clone()]);
    assert_eq!(done_count(&mut conn), 1);
    let value: String = redis::cmd("GET").arg(BUCKET).query(&mut conn).unwrap();
    assert_eq!(value, "x");
}
