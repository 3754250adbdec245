//! The writes one job has made and not committed, and how its reads see them.

use std::collections::BTreeMap;

use super::{KvLimits, KvOp, KvWrite, MAX_KEY_BYTES};

/// The largest count an increment may reach: Redis counts are signed 64-bit.
const MAX_COUNT: u64 = i64::MAX as u64;

/// What one job wrote, one entry per key: what it commits, if it succeeds.
#[derive(Debug, Default)]
pub struct JobWrites {
    /// By (bucket, key).
    pending: BTreeMap<(String, String), KvOp>,
    /// Key and value bytes of `pending`.
    bytes: usize,
    limits: KvLimits,
    /// The first limit the job broke: it fails, whatever it returns.
    violation: Option<String>,
}

/// What this job's own writes say of a key.
pub enum Seen<'a> {
    /// It set this value.
    Value(&'a [u8]),
    Deleted,
    /// It added this much to whatever is committed.
    Added(u64),
    /// It did not write it.
    Untouched,
}

impl JobWrites {
    pub fn new(limits: KvLimits) -> Self {
        JobWrites {
            limits,
            ..JobWrites::default()
        }
    }

    /// Forgets everything, for the next job of a reused state.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.bytes = 0;
        self.violation = None;
    }

    pub fn limits(&self) -> &KvLimits {
        &self.limits
    }

    pub fn seen(&self, bucket: &str, key: &str) -> Seen<'_> {
        match self.pending.get(&(bucket.to_owned(), key.to_owned())) {
            Some(KvOp::Set(value)) => Seen::Value(value),
            Some(KvOp::Delete) => Seen::Deleted,
            Some(KvOp::Increment(delta)) => Seen::Added(*delta),
            None => Seen::Untouched,
        }
    }

    /// Keys of `bucket` this job set or incremented (they exist for it).
    pub fn written_keys(&self, bucket: &str) -> impl Iterator<Item = &str> {
        self.pending
            .iter()
            .filter(move |((b, _), op)| b == bucket && !matches!(op, KvOp::Delete))
            .map(|((_, key), _)| key.as_str())
    }

    /// Whether this job wrote (or deleted) `key` of `bucket`.
    pub fn touched(&self, bucket: &str, key: &str) -> bool {
        self.pending
            .contains_key(&(bucket.to_owned(), key.to_owned()))
    }

    pub fn set(&mut self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), String> {
        if value.len() > self.limits.value_bytes {
            return Err(self.violate(format!(
                "value of {} bytes for {bucket}/{key} exceeds kv_value_bytes ({} bytes; raise it under [limits] in the plugin's NAME.toml)",
                value.len(),
                self.limits.value_bytes
            )));
        }
        self.put(bucket, key, KvOp::Set(value))
    }

    pub fn delete(&mut self, bucket: &str, key: &str) -> Result<(), String> {
        self.put(bucket, key, KvOp::Delete)
    }

    /// Adds `delta` to a key; `committed` reads the committed value, asked
    /// only when this job has not set the key itself. Returns the count as
    /// this job sees it.
    pub fn increment(
        &mut self,
        bucket: &str,
        key: &str,
        delta: u64,
        committed: impl FnOnce() -> Result<Option<Vec<u8>>, String>,
    ) -> Result<u64, String> {
        let (base, op) = match self.seen(bucket, key) {
            Seen::Value(value) => {
                let count = parse_count(value).map_err(|why| format!("{bucket}/{key} {why}"))?;
                (count, None)
            }
            Seen::Deleted => (0, None),
            Seen::Added(added) => (count_of(committed()?, bucket, key)?, Some(added)),
            Seen::Untouched => (count_of(committed()?, bucket, key)?, Some(0)),
        };
        let added = op.map_or(Some(delta), |added| added.checked_add(delta));
        let total = added.and_then(|added| base.checked_add(added));
        let (Some(added), Some(total)) = (added, total.filter(|t| *t <= MAX_COUNT)) else {
            return Err(format!(
                "incrementing {bucket}/{key} by {delta} would pass the largest count ({MAX_COUNT})"
            ));
        };
        // A key this job set keeps its value; one it did not is added to at commit.
        let op = match op {
            Some(_) => KvOp::Increment(added),
            None => KvOp::Set(total.to_string().into_bytes()),
        };
        self.put(bucket, key, op)?;
        Ok(total)
    }

    /// The first limit this job broke, if any.
    pub fn violation(&self) -> Option<&str> {
        self.violation.as_deref()
    }

    /// The writes to commit, emptying this job's list.
    pub fn take(&mut self) -> Vec<KvWrite> {
        self.bytes = 0;
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|((bucket, key), op)| KvWrite { bucket, key, op })
            .collect()
    }

    fn put(&mut self, bucket: &str, key: &str, op: KvOp) -> Result<(), String> {
        if key.len() > MAX_KEY_BYTES {
            return Err(self.violate(format!(
                "key of {} bytes in bucket {bucket} exceeds the longest a key may be ({MAX_KEY_BYTES} bytes)",
                key.len()
            )));
        }
        let id = (bucket.to_owned(), key.to_owned());
        let old = self
            .pending
            .get(&id)
            .map_or(0, |op| key.len() + op_bytes(op));
        if old == 0 && self.pending.len() >= self.limits.writes {
            return Err(self.violate(format!(
                "a job may write at most {} keys (kv_writes; raise it under [limits] in the plugin's NAME.toml)",
                self.limits.writes
            )));
        }
        let bytes = self.bytes - old + key.len() + op_bytes(&op);
        if bytes > self.limits.write_bytes {
            return Err(self.violate(format!(
                "a job may write at most {} bytes of keys and values (kv_write_bytes; raise it under [limits] in the plugin's NAME.toml)",
                self.limits.write_bytes
            )));
        }
        self.bytes = bytes;
        self.pending.insert(id, op);
        Ok(())
    }

    fn violate(&mut self, why: String) -> String {
        self.violation.get_or_insert_with(|| why.clone());
        why
    }
}

fn op_bytes(op: &KvOp) -> usize {
    match op {
        KvOp::Set(value) => value.len(),
        KvOp::Delete | KvOp::Increment(_) => 8,
    }
}

fn count_of(value: Option<Vec<u8>>, bucket: &str, key: &str) -> Result<u64, String> {
    value.map_or(Ok(0), |value| {
        parse_count(&value).map_err(|why| format!("{bucket}/{key} {why}"))
    })
}

/// A count as Redis keeps it: decimal digits, no sign, no leading zero,
/// at most `i64::MAX`.
pub fn parse_count(value: &[u8]) -> Result<u64, String> {
    let canonical = !value.is_empty()
        && value.len() <= 19
        && value.iter().all(u8::is_ascii_digit)
        && (value[0] != b'0' || value.len() == 1);
    std::str::from_utf8(value)
        .ok()
        .filter(|_| canonical)
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|count| *count <= MAX_COUNT)
        .ok_or_else(|| {
            format!(
                "holds \"{}\", which is not a count to increment (decimal digits, at most {MAX_COUNT})",
                value.escape_ascii().to_string().chars().take(64).collect::<String>()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(value: &str) -> impl FnOnce() -> Result<Option<Vec<u8>>, String> {
        let value = value.as_bytes().to_vec();
        move || Ok(Some(value))
    }

    #[test]
    fn increments_of_committed_keys_commit_as_increments() {
        let mut writes = JobWrites::new(KvLimits::default());
        assert_eq!(writes.increment("c", "k", 2, committed("5")).unwrap(), 7);
        assert_eq!(writes.increment("c", "k", 3, committed("10")).unwrap(), 15);
        assert_eq!(
            writes.take(),
            vec![KvWrite {
                bucket: "c".into(),
                key: "k".into(),
                op: KvOp::Increment(5)
            }]
        );
    }

    #[test]
    fn increments_of_keys_the_job_set_or_deleted_stay_sets() {
        let mut writes = JobWrites::new(KvLimits::default());
        writes.set("c", "k", b"4".to_vec()).unwrap();
        assert_eq!(
            writes
                .increment("c", "k", 1, || panic!("not read"))
                .unwrap(),
            5
        );
        writes.delete("c", "d").unwrap();
        assert_eq!(
            writes
                .increment("c", "d", 2, || panic!("not read"))
                .unwrap(),
            2
        );
        let ops: Vec<_> = writes.take().into_iter().map(|w| w.op).collect();
        assert_eq!(
            ops,
            vec![KvOp::Set(b"2".to_vec()), KvOp::Set(b"5".to_vec())]
        );
    }

    #[test]
    fn only_counts_can_be_incremented_and_never_past_the_largest() {
        let mut writes = JobWrites::new(KvLimits::default());
        for bad in ["x", "-1", "007", "", "9223372036854775808"] {
            let error = writes.increment("c", "k", 1, committed(bad)).unwrap_err();
            assert!(error.contains("not a count"), "{bad}: {error}");
        }
        let max = MAX_COUNT.to_string();
        assert!(writes.increment("c", "k", 1, committed(&max)).is_err());
        assert!(
            writes.violation().is_none(),
            "a bad count is no limit broken"
        );
        assert_eq!(parse_count(b"0"), Ok(0));
    }

    #[test]
    fn limits_are_violations_that_stay() {
        let limits = KvLimits {
            value_bytes: 4,
            writes: 2,
            write_bytes: 100,
            list_keys: 10,
        };
        let mut writes = JobWrites::new(limits);
        let error = writes.set("c", "k", b"12345".to_vec()).unwrap_err();
        assert!(error.contains("kv_value_bytes"), "{error}");
        writes.set("c", "a", b"1".to_vec()).unwrap();
        writes.set("c", "b", b"1".to_vec()).unwrap();
        writes.set("c", "a", b"2".to_vec()).unwrap();
        assert!(
            writes
                .set("c", "z", b"1".to_vec())
                .unwrap_err()
                .contains("kv_writes")
        );
        assert!(writes.violation().unwrap().contains("kv_value_bytes"));
        let mut writes = JobWrites::new(limits);
        let error = writes
            .set("c", &"k".repeat(99), b"12".to_vec())
            .unwrap_err();
        assert!(error.contains("kv_write_bytes"), "{error}");
    }

    #[test]
    fn the_job_sees_its_own_writes() {
        let mut writes = JobWrites::new(KvLimits::default());
        writes.set("c", "a", b"v".to_vec()).unwrap();
        writes.delete("c", "b").unwrap();
        assert!(matches!(writes.seen("c", "a"), Seen::Value(b"v")));
        assert!(matches!(writes.seen("c", "b"), Seen::Deleted));
        assert!(matches!(writes.seen("d", "a"), Seen::Untouched));
        assert_eq!(writes.written_keys("c").collect::<Vec<_>>(), ["a"]);
        writes.clear();
        assert!(writes.take().is_empty());
    }
}
