//! A test-only plugin for the end-to-end tests of key-value state: it runs
//! the operations a test lists, then ends the job the way the test asks, so
//! a test can check what was committed with the ack and what was not.
//!
//! - `kv.run`: `{"ops":[...],"then":"ok"}`. Each op is an object with `op`:
//!   `open`, `get`, `set` (`value` text, or `size` bytes of `x`), `del`,
//!   `exists`, `incr` (`by`), `list` (all keys, sorted), each with `bucket`
//!   and (but for `open` and `list`) `key`. The output is the JSON array of
//!   their results. The first op that fails ends the job as fatal,
//!   `kv: <the SDK's message>`, so the dead-letter entry quotes the host.
//!   After the ops, `then` ends the job: `ok` (the default), `fatal`,
//!   `retry`, `trap` (a panic), `sleep` (60 s, for the host's timeout), or
//!   `succeed-on-3` (retry until the third attempt).
//! - `kv.count`: `{"n":N}`, for the chaos test: fatal if marker `mN` is
//!   already set in `markers` (the job ran twice), else sets it and adds one
//!   to `c{N % 100}` in `counters`; the output is the counter's new value.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::Duration;

use jobhost_sdk::kv::Bucket;
use jobhost_sdk::{Error, Job, Output};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Run {
    ops: Vec<Op>,
    #[serde(default)]
    then: Then,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Op {
    Open {
        bucket: String,
    },
    Get {
        bucket: String,
        key: String,
    },
    Set {
        bucket: String,
        key: String,
        value: Option<String>,
        size: Option<usize>,
    },
    Del {
        bucket: String,
        key: String,
    },
    Exists {
        bucket: String,
        key: String,
    },
    Incr {
        bucket: String,
        key: String,
        by: u64,
    },
    List {
        bucket: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum Then {
    #[default]
    Ok,
    Fatal,
    Retry,
    Trap,
    Sleep,
    #[serde(rename = "succeed-on-3")]
    SucceedOn3,
}

#[derive(Deserialize)]
struct Count {
    n: u64,
}

fn handle(job: Job) -> Result<Output, Error> {
    match job.job_type() {
        "kv.run" => run(&job),
        "kv.count" => count(job.json()?),
        other => Err(Error::fatal(format!("kv-probe does not handle {other}"))),
    }
}

fn run(job: &Job) -> Result<Output, Error> {
    let run: Run = job.json()?;
    let mut buckets = Buckets::default();
    let mut results = Vec::with_capacity(run.ops.len());
    for op in run.ops {
        let result = apply(&mut buckets, op).map_err(|e| Error::fatal(e.message().to_owned()))?;
        results.push(result);
    }
    match run.then {
        Then::Ok => {}
        Then::Fatal => return Err(Error::fatal("asked to fail")),
        Then::Retry => return Err(Error::retry("asked to retry")),
        Then::Trap => panic!("asked to trap"),
        Then::Sleep => std::thread::sleep(Duration::from_secs(60)),
        Then::SucceedOn3 if job.attempt() < 3 => {
            return Err(Error::retry(format!("attempt {}", job.attempt())));
        }
        Then::SucceedOn3 => {}
    }
    Output::json(&results)
}

/// The buckets a run has opened, each opened once.
#[derive(Default)]
struct Buckets(BTreeMap<String, Bucket>);

impl Buckets {
    fn get(&mut self, name: String) -> Result<&Bucket, Error> {
        Ok(match self.0.entry(name) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(new) => {
                let bucket = Bucket::open(new.key())?;
                new.insert(bucket)
            }
        })
    }
}

fn apply(buckets: &mut Buckets, op: Op) -> Result<Value, Error> {
    Ok(match op {
        Op::Open { bucket } => {
            buckets.get(bucket)?;
            Value::Null
        }
        Op::Get { bucket, key } => match buckets.get(bucket)?.get(&key)? {
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned().into(),
            None => Value::Null,
        },
        Op::Set {
            bucket,
            key,
            value,
            size,
        } => {
            let bytes = match (value, size) {
                (Some(text), None) => text.into_bytes(),
                (None, Some(size)) => vec![b'x'; size],
                _ => return Err(Error::fatal("set needs one of `value` and `size`")),
            };
            buckets.get(bucket)?.set(&key, bytes)?;
            Value::Null
        }
        Op::Del { bucket, key } => {
            buckets.get(bucket)?.delete(&key)?;
            Value::Null
        }
        Op::Exists { bucket, key } => buckets.get(bucket)?.exists(&key)?.into(),
        Op::Incr { bucket, key, by } => buckets.get(bucket)?.increment(&key, by)?.into(),
        Op::List { bucket } => buckets.get(bucket)?.keys()?.into(),
    })
}

fn count(count: Count) -> Result<Output, Error> {
    let marker = format!("m{}", count.n);
    let markers = Bucket::open("markers")?;
    if markers.exists(&marker)? {
        return Err(Error::fatal(format!("marker {marker} already set")));
    }
    markers.set(&marker, "1")?;
    let counters = Bucket::open("counters")?;
    let value = counters.increment(&format!("c{}", count.n % 100), 1)?;
    Ok(value.to_string().into())
}

jobhost_sdk::plugin! {
    name: "kv-probe",
    version: env!("CARGO_PKG_VERSION"),
    handles: ["kv.*"],
    handler: handle,
}

#[cfg(test)]
mod tests {
    use jobhost_sdk::testing;

    use super::*;

    fn run(payload: &str) -> Result<String, Error> {
        handle(Job::new("kv.run", payload)).map(|o| String::from_utf8(o.into_bytes()).unwrap())
    }

    #[test]
    fn ops_report_their_results_in_order() {
        let output = run(r#"{"ops":[
            {"op":"open","bucket":"b"},
            {"op":"set","bucket":"b","key":"k","value":"v"},
            {"op":"set","bucket":"b","key":"big","size":3},
            {"op":"get","bucket":"b","key":"k"},
            {"op":"get","bucket":"b","key":"none"},
            {"op":"incr","bucket":"b","key":"n","by":5},
            {"op":"exists","bucket":"b","key":"n"},
            {"op":"del","bucket":"b","key":"k"},
            {"op":"exists","bucket":"b","key":"k"},
            {"op":"list","bucket":"b"}
        ]}"#)
        .unwrap();
        assert_eq!(
            output,
            r#"[null,null,null,"v",null,5,true,null,false,["big","n"]]"#
        );
        assert_eq!(testing::kv_get("b", "big"), Some(b"xxx".to_vec()));
    }

    #[test]
    fn the_first_failing_op_is_fatal_with_the_sdk_message() {
        testing::deny_bucket("no");
        let error = run(r#"{"ops":[{"op":"open","bucket":"no"},{"op":"set","bucket":"b","key":"k","value":"v"}]}"#)
            .unwrap_err();
        assert!(error.is_fatal());
        assert!(
            error.message().starts_with("kv: no: bucket \"no\""),
            "{error}"
        );
        assert_eq!(testing::kv_get("b", "k"), None);
    }

    #[test]
    fn then_ends_the_job_as_asked() {
        assert!(run(r#"{"ops":[],"then":"fatal"}"#).unwrap_err().is_fatal());
        assert_eq!(
            run(r#"{"ops":[],"then":"retry"}"#).unwrap_err().message(),
            "asked to retry"
        );
        let job = |attempt| {
            Job::new("kv.run", r#"{"ops":[],"then":"succeed-on-3"}"#).with_attempt(attempt)
        };
        assert_eq!(handle(job(2)).unwrap_err().message(), "attempt 2");
        assert!(handle(job(3)).is_ok());
    }

    #[test]
    fn count_sets_a_marker_once_and_counts_by_remainder() {
        let count = |n: u64| {
            handle(Job::new("kv.count", format!(r#"{{"n":{n}}}"#)))
                .map(|o| String::from_utf8(o.into_bytes()).unwrap())
        };
        assert_eq!(count(7).unwrap(), "1");
        assert_eq!(count(107).unwrap(), "2");
        assert_eq!(testing::kv_get("counters", "c7"), Some(b"2".to_vec()));
        let again = count(7).unwrap_err();
        assert!(again.is_fatal());
        assert_eq!(again.message(), "marker m7 already set");
    }
}
