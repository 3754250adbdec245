//! The host's scheduler: fires the namespace's recurring schedules. Every
//! host runs one, whatever queues it serves, and none leads: for each tick
//! that comes due every host calls `broker/schedule_fire.lua`, which enqueues
//! the tick's job only for the first of them.
//!
//! It reads the schedule list about every [`RELOAD_EVERY`] (to see schedules
//! added, removed, paused or changed) and otherwise sleeps until the next
//! tick is due. While Redis fails it keeps the host alive, backs off and
//! reads everything again once Redis answers; a schedule whose key holds
//! another type, or whose stored definition no longer parses, is reported
//! once and skipped until fixed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::Redis;
use crate::broker::schedules::{Fired, ScheduleStoreError, StoredSchedule};
use crate::envelope::{format_rfc3339_ms, now_ms};
use crate::schedule::{self, Definition};
use crate::shutdown::Shutdown;

use super::health::RedisPath;

/// How often the schedule list is read again.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// One schedule as this host last read it.
struct Watched {
    stored: StoredSchedule,
    definition: Definition,
}

/// Applies the `[[schedule]]` entries of the config file at start: each
/// overwrites the definition of the schedule of its name (its fire state
/// kept); schedules of other names are left alone. A key of another type is
/// reported and skipped: it keeps no host from serving.
pub(super) async fn apply(
    redis: &mut Redis,
    namespace: &str,
    definitions: &[Definition],
) -> Result<(), crate::broker::BrokerError> {
    for definition in definitions {
        let name = definition.name.as_str();
        match redis.define_schedule(namespace, definition).await {
            Ok(how) => tracing::info!(
                schedule = %name, queue = %definition.queue, cron = %definition.cron.text(),
                tz = %definition.cron.zone(), change = ?how, "schedule from the config file applied"
            ),
            Err(ScheduleStoreError::Redis(error)) => return Err(error),
            Err(error) => tracing::error!(
                schedule = %name, "schedule from the config file not applied: {error}"
            ),
        }
    }
    Ok(())
}

/// Fires schedules until shutdown.
pub(super) async fn fire_schedules(
    mut redis: Redis,
    namespace: String,
    mut health: RedisPath,
    mut shutdown: Shutdown,
) {
    let mut watched: Vec<Watched> = Vec::new();
    let mut reported: HashSet<String> = HashSet::new();
    // Per schedule, why it could not fire (logged once while it lasts).
    let mut cannot_fire: HashMap<String, String> = HashMap::new();
    let mut next_reload = Instant::now();
    loop {
        let mut wait = None;
        if Instant::now() >= next_reload {
            match load(&mut redis, &namespace, &mut reported).await {
                Ok(list) => {
                    health.ok();
                    watched = list;
                    next_reload = Instant::now() + RELOAD_EVERY;
                }
                Err(error) => wait = Some(health.failed(&error)),
            }
        }
        if wait.is_none() {
            match fire_due(&mut redis, &namespace, &mut watched, &mut cannot_fire).await {
                Ok(changed) => {
                    health.ok();
                    if changed {
                        next_reload = Instant::now();
                    }
                }
                Err(error) => {
                    wait = Some(health.failed(&error));
                    next_reload = Instant::now();
                }
            }
        }
        let wait = wait.unwrap_or_else(|| {
            let now = now_ms();
            let next_tick = watched
                .iter()
                .filter_map(|w| schedule::next_fire(&w.definition.cron, &w.stored.state, now))
                .min();
            let until_reload = next_reload.saturating_duration_since(Instant::now());
            next_tick.map_or(until_reload, |tick| {
                Duration::from_millis(tick.saturating_sub(now)).min(until_reload)
            })
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// Every schedule of the namespace that can be fired. Problems with one
/// schedule are logged once (while they last) and skip it.
async fn load(
    redis: &mut Redis,
    namespace: &str,
    reported: &mut HashSet<String>,
) -> Result<Vec<Watched>, crate::broker::BrokerError> {
    let mut problems = HashSet::new();
    let mut watched = Vec::new();
    match redis.schedule_index(namespace).await {
        Ok(index) => {
            for (name, queue) in index {
                match redis.read_schedule(namespace, &name, &queue).await {
                    // Removed, or indexed before its hash was written.
                    Ok(None) => {}
                    Ok(Some(stored)) => match stored.definition() {
                        Ok(definition) => watched.push(Watched { stored, definition }),
                        Err(error) => {
                            problems.insert(format!("{error}; it does not fire until fixed"));
                        }
                    },
                    Err(ScheduleStoreError::Redis(error)) => return Err(error),
                    Err(error) => {
                        problems.insert(format!(
                            "schedule {name} cannot be read: {error}; it does not fire until then"
                        ));
                    }
                }
            }
        }
        Err(ScheduleStoreError::Redis(error)) => return Err(error),
        Err(error) => {
            problems.insert(format!("cannot read the list of schedules: {error}"));
        }
    }
    for problem in problems.difference(reported) {
        tracing::error!("{problem}");
    }
    *reported = problems;
    Ok(watched)
}

/// Fires every tick due now, walking each schedule through its due ticks
/// (a catch-up first, then those within the grace). True when some schedule
/// changed under it and the list should be read again.
async fn fire_due(
    redis: &mut Redis,
    namespace: &str,
    watched: &mut [Watched],
    cannot_fire: &mut HashMap<String, String>,
) -> Result<bool, crate::broker::BrokerError> {
    let mut changed = false;
    for w in watched.iter_mut() {
        let cron = &w.definition.cron;
        while let Some(due) = schedule::due(cron, w.definition.catch_up, &w.stored.state, now_ms())
        {
            let fired = redis
                .fire_schedule(
                    namespace,
                    &w.stored,
                    &w.definition,
                    Some((due.tick, due.catch_up)),
                )
                .await?;
            match fired {
                Fired::Fired { job_id, .. } => {
                    tracing::info!(
                        schedule = %w.stored.name, queue = %w.stored.queue, %job_id,
                        tick = %format_rfc3339_ms(due.tick), catch_up = due.catch_up,
                        "schedule fired"
                    );
                    w.stored.state.last_tick = Some(due.tick);
                    cannot_fire.remove(&w.stored.name);
                }
                Fired::Taken { last_tick } => {
                    w.stored.state.last_tick = Some(last_tick.max(due.tick));
                }
                Fired::Paused | Fired::Stale | Fired::Gone => {
                    // Not fired by this host until it reads the schedule again.
                    w.stored.state.paused = true;
                    changed = true;
                }
                Fired::WrongType { key, reason } => {
                    let problem = format!(
                        "schedule {} cannot fire: key {key} {reason}; fix or delete it",
                        w.stored.name
                    );
                    if cannot_fire.get(&w.stored.name) != Some(&problem) {
                        tracing::error!("{problem}");
                        cannot_fire.insert(w.stored.name.clone(), problem);
                    }
                    w.stored.state.paused = true;
                }
            }
        }
    }
    Ok(changed)
}
