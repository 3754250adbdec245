//! Schedules in Redis: each one's hash under its queue's hash tag
//! (definition and fire state), the namespace's index of them, and the two
//! scripts that change them: `schedule_edit.lua` (define, pause, resume) and
//! `schedule_fire.lua` (one tick, or a run-now, and its job, atomically).

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::Script;
use thiserror::Error;

use super::{BrokerError, Redis};
use crate::envelope::{Envelope, ScheduleFields};
use crate::keys::{QueueKeys, schedules_index};
use crate::schedule::{CatchUp, Definition, FireState, ScheduleError};

static EDIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("schedule_edit.lua")));
static FIRE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("schedule_fire.lua")));

/// Producer name of the jobs schedules enqueue.
pub const PRODUCER: &str = "jobhost-schedule";

/// A schedule operation could not be done.
#[derive(Debug, Error)]
pub enum ScheduleStoreError {
    #[error(transparent)]
    Redis(#[from] BrokerError),
    #[error("key {key} {reason}; delete it (redis-cli DEL '{key}') or fix it")]
    WrongType { key: String, reason: String },
    #[error("no schedule {0} (see `jobhost schedule list`)")]
    Missing(String),
    #[error("schedule {name}: {error}")]
    Invalid { name: String, error: ScheduleError },
}

/// A schedule as Redis holds it.
#[derive(Debug, Clone)]
pub struct StoredSchedule {
    pub name: String,
    pub queue: String,
    pub cron: String,
    pub tz: String,
    pub job_type: String,
    pub payload: Vec<u8>,
    pub catch_up: String,
    pub state: FireState,
    /// When the last tick fired (ms, Redis's clock).
    pub last_fired_at: Option<u64>,
    /// Incremented by every edit; a fire names the one it read.
    pub rev: String,
}

impl StoredSchedule {
    /// The definition, checked again: a hand-edited hash may hold anything.
    pub fn definition(&self) -> Result<Definition, ScheduleStoreError> {
        let catch_up = self.catch_up.parse::<CatchUp>();
        catch_up
            .and_then(|catch_up| {
                Definition::new(
                    &self.name,
                    &self.cron,
                    &self.tz,
                    &self.queue,
                    &self.job_type,
                    self.payload.clone(),
                    catch_up,
                )
            })
            .map_err(|error| ScheduleStoreError::Invalid {
                name: self.name.clone(),
                error,
            })
    }

    fn from_hash(name: &str, queue: &str, mut hash: HashMap<String, Vec<u8>>) -> Self {
        let mut text = |field: &str| {
            hash.remove(field)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        };
        let number = |value: Option<String>| value.and_then(|v| v.parse::<u64>().ok());
        let state = FireState {
            last_tick: number(text("last_tick")),
            armed_at: number(text("armed_at")).unwrap_or(0),
            paused: text("paused").as_deref() == Some("1"),
        };
        StoredSchedule {
            name: name.to_owned(),
            queue: queue.to_owned(),
            cron: text("cron").unwrap_or_default(),
            tz: text("tz").unwrap_or_default(),
            job_type: text("type").unwrap_or_default(),
            catch_up: text("catch_up").unwrap_or_default(),
            last_fired_at: number(text("last_fired_at")),
            rev: text("rev").unwrap_or_default(),
            state,
            payload: hash.remove("payload").unwrap_or_default(),
        }
    }
}

/// How `schedule add` (or a `[[schedule]]` entry) changed a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Defined {
    Created,
    /// Replaced; its fire state is kept.
    Replaced,
    /// Replaced with another cron or zone: armed again now, so the new
    /// expression's earlier ticks never fire.
    Rearmed,
    /// Moved to another queue: its fire state starts afresh there.
    Moved {
        from: String,
    },
}

/// What `pause` or `resume` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edited {
    Done,
    Unchanged,
}

/// What one call of `schedule_fire.lua` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// The job is on the stream.
    Fired {
        entry_id: String,
        job_id: String,
    },
    /// That tick or a later one fired already (another host was first).
    Taken {
        last_tick: u64,
    },
    Paused,
    /// The definition changed since it was read.
    Stale,
    /// Removed.
    Gone,
    WrongType {
        key: String,
        reason: String,
    },
}

/// Whether Redis refused a command because the key holds another type.
fn is_wrong_type(error: &BrokerError) -> bool {
    matches!(error, BrokerError::Command { error, .. } if error.code() == Some("WRONGTYPE"))
}

fn wrong_type(key: &str, kind: &str) -> impl FnOnce(BrokerError) -> ScheduleStoreError {
    let key = key.to_owned();
    let kind = kind.to_owned();
    move |error| {
        if is_wrong_type(&error) {
            ScheduleStoreError::WrongType {
                key,
                reason: format!("is not a {kind}"),
            }
        } else {
            ScheduleStoreError::Redis(error)
        }
    }
}

/// Parses a script's `{"wrongtype", key, why}` (or any other answer) reply.
fn answer(parts: Vec<String>) -> Result<Vec<String>, ScheduleStoreError> {
    match parts.first().map(String::as_str) {
        Some("wrongtype") if parts.len() == 3 => Err(ScheduleStoreError::WrongType {
            key: parts[1].clone(),
            reason: parts[2].clone(),
        }),
        _ => Ok(parts),
    }
}

impl Redis {
    /// The namespace's schedules: name → queue, sorted by name.
    pub async fn schedule_index(
        &mut self,
        namespace: &str,
    ) -> Result<Vec<(String, String)>, ScheduleStoreError> {
        let index = schedules_index(namespace);
        let map: HashMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(&index))
            .await
            .map_err(wrong_type(&index, "hash"))?;
        let mut list: Vec<(String, String)> = map.into_iter().collect();
        list.sort();
        Ok(list)
    }

    /// The queue of schedule `name`, from the index.
    async fn schedule_queue(
        &mut self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>, ScheduleStoreError> {
        let index = schedules_index(namespace);
        self.query(redis::cmd("HGET").arg(&index).arg(name))
            .await
            .map_err(wrong_type(&index, "hash"))
    }

    /// Schedule `name` of queue `queue`; `None` when its hash is missing.
    pub async fn read_schedule(
        &mut self,
        namespace: &str,
        name: &str,
        queue: &str,
    ) -> Result<Option<StoredSchedule>, ScheduleStoreError> {
        let key = QueueKeys::new(namespace, queue).schedule(name);
        let hash: HashMap<String, Vec<u8>> = self
            .query(redis::cmd("HGETALL").arg(&key))
            .await
            .map_err(wrong_type(&key, "hash"))?;
        Ok((!hash.is_empty()).then(|| StoredSchedule::from_hash(name, queue, hash)))
    }

    /// Schedule `name`, found through the index.
    pub async fn find_schedule(
        &mut self,
        namespace: &str,
        name: &str,
    ) -> Result<StoredSchedule, ScheduleStoreError> {
        let missing = || ScheduleStoreError::Missing(name.to_owned());
        let queue = self
            .schedule_queue(namespace, name)
            .await?
            .ok_or_else(missing)?;
        self.read_schedule(namespace, name, &queue)
            .await?
            .ok_or_else(missing)
    }

    /// Creates schedule `definition`, or replaces the definition of the one
    /// of that name (keeping its fire state, unless it moves queue).
    pub async fn define_schedule(
        &mut self,
        namespace: &str,
        definition: &Definition,
    ) -> Result<Defined, ScheduleStoreError> {
        let name = definition.name.as_str();
        let before = self.schedule_queue(namespace, name).await?;
        let keys = QueueKeys::new(namespace, &definition.queue);
        let mut invocation = EDIT.key(keys.schedule(name));
        invocation
            .arg("define")
            .arg(definition.cron.text())
            .arg(definition.cron.zone())
            .arg(&definition.queue)
            .arg(definition.job_type.as_str())
            .arg(definition.payload.as_slice())
            .arg(definition.catch_up.as_str());
        let parts = answer(self.invoke(&invocation).await?)?;
        // Indexed after its hash exists, so no host sees a schedule without one.
        let index = schedules_index(namespace);
        self.query::<()>(
            redis::cmd("HSET")
                .arg(&index)
                .arg(name)
                .arg(&definition.queue),
        )
        .await
        .map_err(wrong_type(&index, "hash"))?;
        if let Some(old) = before.filter(|old| *old != definition.queue) {
            self.query::<()>(redis::cmd("DEL").arg(QueueKeys::new(namespace, &old).schedule(name)))
                .await?;
            return Ok(Defined::Moved { from: old });
        }
        Ok(
            match parts.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["replaced", "rearmed"] => Defined::Rearmed,
                ["replaced", _] => Defined::Replaced,
                _ => Defined::Created,
            },
        )
    }

    /// Pauses (`pause`) or resumes schedule `name`.
    pub async fn set_schedule_paused(
        &mut self,
        namespace: &str,
        name: &str,
        pause: bool,
    ) -> Result<Edited, ScheduleStoreError> {
        let queue = self
            .schedule_queue(namespace, name)
            .await?
            .ok_or_else(|| ScheduleStoreError::Missing(name.to_owned()))?;
        let mut invocation = EDIT.key(QueueKeys::new(namespace, &queue).schedule(name));
        invocation.arg(if pause { "pause" } else { "resume" });
        let parts = answer(self.invoke(&invocation).await?)?;
        match parts.first().map(String::as_str) {
            Some("missing") => Err(ScheduleStoreError::Missing(name.to_owned())),
            Some("unchanged") => Ok(Edited::Unchanged),
            _ => Ok(Edited::Done),
        }
    }

    /// Removes schedule `name`; false when there was none.
    pub async fn remove_schedule(
        &mut self,
        namespace: &str,
        name: &str,
    ) -> Result<bool, ScheduleStoreError> {
        let Some(queue) = self.schedule_queue(namespace, name).await? else {
            return Ok(false);
        };
        let index = schedules_index(namespace);
        // Out of the index first: hosts stop looking for it; a host that
        // still holds it finds its hash gone and fires nothing.
        self.query::<()>(redis::cmd("HDEL").arg(&index).arg(name))
            .await
            .map_err(wrong_type(&index, "hash"))?;
        self.query::<()>(redis::cmd("DEL").arg(QueueKeys::new(namespace, &queue).schedule(name)))
            .await?;
        Ok(true)
    }

    /// Enqueues the job of `schedule` for `tick` (ms), or at once for a
    /// run-now (`None`), if the schedule still has the definition it was read
    /// with — and for a tick, only if no host fired it (or a later one) yet.
    pub async fn fire_schedule(
        &mut self,
        namespace: &str,
        schedule: &StoredSchedule,
        definition: &Definition,
        tick: Option<(u64, bool)>,
    ) -> Result<Fired, BrokerError> {
        let keys = QueueKeys::new(namespace, &schedule.queue);
        let mut job = Envelope::new(definition.job_type.clone(), definition.payload.clone());
        job.producer = Some(PRODUCER.to_owned());
        job.schedule = Some(ScheduleFields {
            name: schedule.name.clone(),
            tick: tick.map(|(tick, _)| tick.to_string()),
            catch_up: tick.is_some_and(|(_, catch_up)| catch_up),
        });
        let mut invocation = FIRE.key(keys.schedule(&schedule.name));
        invocation.key(&keys.stream);
        match tick {
            Some((tick, _)) => invocation.arg("tick").arg(&schedule.rev).arg(tick),
            None => invocation.arg("now").arg(&schedule.rev).arg(""),
        };
        job.for_each_field(|name, value| {
            invocation.arg(name).arg(value);
        });
        let parts: Vec<String> = self.invoke(&invocation).await?;
        let part = |i: usize| parts.get(i).cloned().unwrap_or_default();
        Ok(match parts.first().map(String::as_str) {
            Some("fired") => Fired::Fired {
                entry_id: part(1),
                job_id: job.job_id.to_string(),
            },
            Some("taken") => Fired::Taken {
                last_tick: part(1).parse().unwrap_or(0),
            },
            Some("paused") => Fired::Paused,
            Some("gone") => Fired::Gone,
            Some("wrongtype") => Fired::WrongType {
                key: part(1),
                reason: part(2),
            },
            _ => Fired::Stale,
        })
    }
}
