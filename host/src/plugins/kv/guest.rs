//! The host side of `wasi:keyvalue` (store, atomics, batch): grants, reads
//! through the job's own writes, and writes kept for the commit.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Resource, ResourceTable};

use super::KvGrant;
use super::committed::CommittedKv;
use super::writes::{JobWrites, Seen, parse_count};
use crate::plugins::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::plugins::state::JobState;

use store::Error;

/// Buckets one job may open (each `open` is a handle the host keeps until
/// the job ends).
const MAX_OPENS: u32 = 1000;

/// An open bucket, as the guest holds it.
pub struct Bucket {
    name: String,
}

/// A job's key-value state: what it may open, where committed values are
/// read, and what it wrote.
pub struct JobKv {
    grant: Arc<KvGrant>,
    committed: Arc<dyn CommittedKv>,
    pub writes: JobWrites,
    /// The queue of the job running: its buckets are that queue's.
    pub queue: String,
    opens: u32,
}

impl JobKv {
    pub fn new(grant: Arc<KvGrant>, committed: Arc<dyn CommittedKv>) -> Self {
        let writes = JobWrites::new(grant.limits);
        JobKv {
            grant,
            committed,
            writes,
            queue: String::new(),
            opens: 0,
        }
    }

    /// Forgets the previous job's writes and opens.
    pub fn start_job(&mut self) {
        self.writes.clear();
        self.opens = 0;
    }
}

/// What one key-value call needs of the job's state.
pub struct KvView<'a> {
    pub kv: &'a mut JobKv,
    pub table: &'a mut ResourceTable,
    pub deadline: Instant,
    pub plugin: &'a str,
}

impl KvView<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> Result<String, Error> {
        self.table
            .get(bucket)
            .map(|bucket| bucket.name.clone())
            .map_err(|e| Error::Other(format!("bucket handle: {e}")))
    }

    fn committed(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.kv
            .committed
            .get(&self.kv.queue, bucket, key, self.deadline)
    }

    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self.kv.writes.seen(bucket, key) {
            Seen::Value(value) => Ok(Some(value.to_vec())),
            Seen::Deleted => Ok(None),
            Seen::Added(added) => {
                let base = match self.committed(bucket, key)? {
                    Some(value) => {
                        parse_count(&value).map_err(|why| format!("{bucket}/{key} {why}"))?
                    }
                    None => 0,
                };
                Ok(Some(base.saturating_add(added).to_string().into_bytes()))
            }
            Seen::Untouched => self.committed(bucket, key),
        }
    }

    fn exists(&self, bucket: &str, key: &str) -> Result<bool, String> {
        match self.kv.writes.seen(bucket, key) {
            Seen::Value(_) | Seen::Added(_) => Ok(true),
            Seen::Deleted => Ok(false),
            Seen::Untouched => self
                .kv
                .committed
                .exists(&self.kv.queue, bucket, key, self.deadline),
        }
    }

    /// A page of keys: the first page also lists the keys this job wrote;
    /// every page leaves out the keys this job touched, so no key shows twice
    /// and deleted ones not at all.
    fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<store::KeyResponse, String> {
        let count = self.kv.writes.limits().list_keys;
        let page = self.kv.committed.page(
            &self.kv.queue,
            bucket,
            cursor.unwrap_or(0),
            count,
            self.deadline,
        )?;
        let writes = &self.kv.writes;
        let mut keys: Vec<String> = match cursor {
            None => writes.written_keys(bucket).map(str::to_owned).collect(),
            Some(_) => Vec::new(),
        };
        keys.extend(
            page.keys
                .into_iter()
                .filter(|key| !writes.touched(bucket, key)),
        );
        Ok(store::KeyResponse {
            keys,
            cursor: page.next,
        })
    }
}

fn other(why: String) -> Error {
    Error::Other(why)
}

impl store::Host for JobState {
    fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Error> {
        let view = self.kv_view();
        if !view.kv.grant.allows(&identifier) {
            let refusal = view.kv.grant.refusal(view.plugin, &identifier);
            tracing::warn!(plugin = %view.plugin, bucket = %identifier, "key-value bucket not granted");
            return Err(other(refusal));
        }
        if view.kv.opens >= MAX_OPENS {
            return Err(other(format!("a job may open at most {MAX_OPENS} buckets")));
        }
        view.kv.opens += 1;
        view.table
            .push(Bucket { name: identifier })
            .map_err(|e| other(format!("opening a bucket: {e}")))
    }
}

impl store::HostBucket for JobState {
    fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Result<Option<Vec<u8>>, Error> {
        let view = self.kv_view();
        let name = view.bucket(&bucket)?;
        view.get(&name, &key).map_err(other)
    }

    fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Result<(), Error> {
        let view = self.kv_view();
        let name = view.bucket(&bucket)?;
        view.kv.writes.set(&name, &key, value).map_err(other)
    }

    fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Error> {
        let view = self.kv_view();
        let name = view.bucket(&bucket)?;
        view.kv.writes.delete(&name, &key).map_err(other)
    }

    fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Error> {
        let view = self.kv_view();
        let name = view.bucket(&bucket)?;
        view.exists(&name, &key).map_err(other)
    }

    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, Error> {
        let view = self.kv_view();
        let name = view.bucket(&bucket)?;
        view.list_keys(&name, cursor).map_err(other)
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.kv_view().table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for JobState {
    fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, Error> {
        let view = self.kv_view();
        let name = view.bucket(&bucket)?;
        let (committed, deadline) = (view.kv.committed.clone(), view.deadline);
        let queue = view.kv.queue.clone();
        view.kv
            .writes
            .increment(&name, &key, delta, || {
                committed.get(&queue, &name, &key, deadline)
            })
            .map_err(other)
    }
}

impl batch::Host for JobState {
    fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, Error> {
        let view = self.kv_view();
        let name = view.bucket(&bucket)?;
        keys.into_iter()
            .map(|key| {
                let value = view.get(&name, &key).map_err(other)?;
                Ok(value.map(|value| (key, value)))
            })
            .collect()
    }

    fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Error> {
        let view = self.kv_view();
        let name = view.bucket(&bucket)?;
        for (key, value) in key_values {
            view.kv.writes.set(&name, &key, value).map_err(other)?;
        }
        Ok(())
    }

    fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Result<(), Error> {
        let view = self.kv_view();
        let name = view.bucket(&bucket)?;
        for key in keys {
            view.kv.writes.delete(&name, &key).map_err(other)?;
        }
        Ok(())
    }
}
