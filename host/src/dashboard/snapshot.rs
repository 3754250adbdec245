//! The overview's figures, read from Redis once a second by one task however
//! many pages are open: every queue's counts, the live hosts, and the last
//! hour's throughput and failures per minute.
//!
//! The charts come from the per-minute history the hosts publish; for a
//! minute without it (hosts of an older version) they fall back on the
//! differences between this process's own samples of the queue counters,
//! so the page is useful a minute after it starts either way.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::broker::{BrokerError, HostInfo, Redis};
use crate::envelope::now_ms;
use crate::keys::QueueKeys;
use crate::shutdown::Shutdown;

/// Minutes the charts cover.
pub const MINUTES: usize = 60;
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Queues, hosts and history change slowly or cost more: read every few rounds.
const SLOW_EVERY: u64 = 5;

/// One queue's line of the overview.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueLine {
    pub queue: String,
    pub paused: bool,
    /// Not yet delivered to any host.
    pub waiting: u64,
    /// Delivered and not yet acknowledged.
    pub running: u64,
    pub delayed: u64,
    pub dead: u64,
    pub done: u64,
    /// Dead-lettered (exhausted or fatal), all time.
    pub failed: u64,
    pub retried: u64,
}

/// What the overview shows, as `/api/overview` serves it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// When it was read (ms); 0 before the first read.
    pub taken_ms: u64,
    /// What the page should warn of, if anything: the last read failed
    /// (the figures are that old), or some keys could not be read.
    pub error: Option<String>,
    pub queues: Vec<QueueLine>,
    pub hosts: Vec<HostInfo>,
    /// The start (ms) of the charts' first minute.
    pub first_minute_ms: u64,
    /// Jobs done per minute, every queue together, oldest first.
    pub throughput: Vec<u64>,
    /// Failed attempts (retried or dead-lettered) per minute.
    pub failures: Vec<u64>,
}

/// The latest snapshot, shared by the sampler and the pages.
#[derive(Clone, Default)]
pub struct Latest(Arc<RwLock<Arc<Snapshot>>>);

impl Latest {
    pub fn get(&self) -> Arc<Snapshot> {
        self.0.read().expect("snapshot lock").clone()
    }

    fn set(&self, snapshot: Snapshot) {
        *self.0.write().expect("snapshot lock") = Arc::new(snapshot);
    }
}

/// Done and failed (retried + dead) counter readings of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reading {
    done: u64,
    failures: u64,
}

/// What the sampler keeps between rounds.
#[derive(Default)]
struct Memory {
    queues: Vec<String>,
    hosts: Vec<HostInfo>,
    /// queue → minute → the first reading seen in that minute.
    readings: BTreeMap<String, BTreeMap<u64, Reading>>,
    /// queue → per-minute counts the hosts published, for the window.
    history: BTreeMap<String, Vec<BTreeMap<String, u64>>>,
    history_from: u64,
    /// What the last slow round could not read (a key of the wrong type,
    /// say); the rest is shown all the same.
    problems: Vec<String>,
}

/// Reads the figures every second into `latest` until `stop`.
pub async fn sample(mut redis: Redis, namespace: String, latest: Latest, mut stop: Shutdown) {
    let mut memory = Memory::default();
    let mut ticker = tokio::time::interval(REFRESH_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0u64.. {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait() => return,
        }
        let slow = round % SLOW_EVERY == 0 || memory.queues.is_empty();
        match read(&mut redis, &namespace, &mut memory, slow).await {
            Ok(snapshot) => latest.set(snapshot),
            Err(error) => {
                let mut stale = (*latest.get()).clone();
                stale.error = Some(format!(
                    "Redis did not answer; these figures may be old: {error}"
                ));
                latest.set(stale);
            }
        }
    }
}

async fn read(
    redis: &mut Redis,
    namespace: &str,
    memory: &mut Memory,
    slow: bool,
) -> Result<Snapshot, BrokerError> {
    let now = now_ms();
    let this_minute = now / 60_000;
    let first = this_minute + 1 - MINUTES as u64;
    let mut problems = Vec::new();
    let paused = match redis.paused(namespace).await {
        Ok(paused) => paused,
        Err(error) if error.is_wrong_type() => {
            problems.push(format!("paused queues: {error}"));
            Default::default()
        }
        Err(error) => return Err(error),
    };
    if slow {
        memory.problems.clear();
        memory.hosts = match redis.hosts(namespace, now).await {
            Ok(hosts) => hosts,
            Err(error) if error.is_wrong_type() => {
                memory.problems.push(format!("hosts: {error}"));
                Vec::new()
            }
            Err(error) => return Err(error),
        };
        memory.queues = known_queues(redis, namespace, &memory.hosts, &paused).await?;
        memory.history.clear();
        for queue in &memory.queues {
            let keys = QueueKeys::new(namespace, queue);
            match redis.history(&keys, first, this_minute).await {
                Ok(minutes) => {
                    memory.history.insert(queue.clone(), minutes);
                }
                Err(error) if error.is_wrong_type() => {
                    memory
                        .problems
                        .push(format!("history of queue {queue}: {error}"));
                }
                Err(error) => return Err(error),
            }
        }
        memory.history_from = first;
    }
    problems.extend(memory.problems.iter().cloned());
    let mut lines = Vec::new();
    for queue in &memory.queues {
        let keys = QueueKeys::new(namespace, queue);
        let counts = match redis.queue_counts(&keys).await {
            Ok(counts) => counts,
            Err(error) if error.is_wrong_type() => {
                problems.push(format!(
                    "queue {queue}: one of {}, {}, {} and {} holds another type than jobhost keeps there",
                    keys.stream, keys.delayed, keys.dlq, keys.counters
                ));
                continue;
            }
            Err(error) => return Err(error),
        };
        let reading = Reading {
            done: counts.processed,
            failures: counts.retried + counts.failed,
        };
        let readings = memory.readings.entry(queue.clone()).or_default();
        readings.entry(this_minute).or_insert(reading);
        readings.retain(|minute, _| *minute + (MINUTES as u64) + 1 > this_minute);
        lines.push(QueueLine {
            queue: queue.clone(),
            paused: paused.contains(queue),
            waiting: counts.lag,
            running: counts.pending,
            delayed: counts.delayed,
            dead: counts.dead_letters,
            done: counts.processed,
            failed: counts.failed,
            retried: counts.retried,
        });
    }
    let (throughput, failures) = series(memory, &lines, first, this_minute);
    Ok(Snapshot {
        taken_ms: now,
        error: (!problems.is_empty())
            .then(|| format!("Some figures could not be read: {}", problems.join("; "))),
        queues: lines,
        hosts: memory.hosts.clone(),
        first_minute_ms: first * 60_000,
        throughput,
        failures,
    })
}

/// Every queue with a stream, paused, or served by a live host.
async fn known_queues(
    redis: &mut Redis,
    namespace: &str,
    hosts: &[HostInfo],
    paused: &std::collections::BTreeSet<String>,
) -> Result<Vec<String>, BrokerError> {
    let mut queues = redis.queues(namespace).await?;
    queues.extend(paused.iter().cloned());
    for host in hosts {
        for served in &host.queues {
            // `critical=6` serves `critical`.
            let name = served.split('=').next().unwrap_or(served);
            queues.push(name.to_owned());
        }
    }
    queues.sort();
    queues.dedup();
    Ok(queues)
}

/// The charts' two series over minutes `first..=last`, every queue summed.
fn series(memory: &Memory, lines: &[QueueLine], first: u64, last: u64) -> (Vec<u64>, Vec<u64>) {
    let mut throughput = vec![0; MINUTES];
    let mut failures = vec![0; MINUTES];
    for line in lines {
        let published = memory.history.get(&line.queue);
        let readings = memory.readings.get(&line.queue);
        let latest = Reading {
            done: line.done,
            failures: line.retried + line.failed,
        };
        for (slot, minute) in (first..=last).enumerate() {
            let from_hosts = published
                .and_then(|minutes| {
                    let index = minute.checked_sub(memory.history_from)? as usize;
                    minutes.get(index)
                })
                .filter(|counts| !counts.is_empty());
            let (done, failed) = match from_hosts {
                Some(counts) => {
                    let count = |name: &str| counts.get(name).copied().unwrap_or(0);
                    (count("done"), count("retry") + count("dead"))
                }
                None => sampled(readings, minute, last, latest),
            };
            throughput[slot] += done;
            failures[slot] += failed;
        }
    }
    (throughput, failures)
}

/// What this process saw a queue's counters grow by in `minute`; zero when
/// it did not watch the whole minute.
fn sampled(
    readings: Option<&BTreeMap<u64, Reading>>,
    minute: u64,
    now: u64,
    latest: Reading,
) -> (u64, u64) {
    let Some(readings) = readings else {
        return (0, 0);
    };
    let Some(start) = readings.get(&minute) else {
        return (0, 0);
    };
    let end = if minute == now {
        latest
    } else {
        match readings.get(&(minute + 1)) {
            Some(end) => *end,
            None => return (0, 0),
        }
    };
    (
        end.done.saturating_sub(start.done),
        end.failures.saturating_sub(start.failures),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(queue: &str, done: u64, failed: u64) -> QueueLine {
        QueueLine {
            queue: queue.to_owned(),
            done,
            failed,
            ..QueueLine::default()
        }
    }

    #[test]
    fn published_history_wins_and_samples_fill_the_other_minutes() {
        let mut memory = Memory {
            history_from: 100,
            ..Memory::default()
        };
        let mut minutes = vec![BTreeMap::new(); MINUTES];
        minutes[0].insert("done".to_owned(), 7);
        minutes[0].insert("dead".to_owned(), 2);
        minutes[0].insert("retry".to_owned(), 1);
        memory.history.insert("q".to_owned(), minutes);
        let readings = memory.readings.entry("q".to_owned()).or_default();
        let last = 100 + MINUTES as u64 - 1;
        readings.insert(
            last - 1,
            Reading {
                done: 10,
                failures: 0,
            },
        );
        readings.insert(
            last,
            Reading {
                done: 15,
                failures: 1,
            },
        );
        let (throughput, failures) = series(&memory, &[line("q", 18, 1)], 100, last);
        assert_eq!(throughput[0], 7);
        assert_eq!(failures[0], 3);
        // The minute before this one: between its first reading and this one's.
        assert_eq!(throughput[MINUTES - 2], 5);
        assert_eq!(failures[MINUTES - 2], 1);
        // This minute: from its first reading to the latest counts.
        assert_eq!(throughput[MINUTES - 1], 3);
        assert_eq!(throughput[1..MINUTES - 2].iter().sum::<u64>(), 0);
    }

    #[test]
    fn a_minute_not_watched_to_its_end_counts_nothing() {
        let mut readings = BTreeMap::new();
        readings.insert(
            5,
            Reading {
                done: 1,
                failures: 0,
            },
        );
        let latest = Reading {
            done: 9,
            failures: 0,
        };
        assert_eq!(sampled(Some(&readings), 5, 7, latest), (0, 0));
        assert_eq!(sampled(Some(&readings), 4, 7, latest), (0, 0));
        assert_eq!(sampled(None, 7, 7, latest), (0, 0));
        assert_eq!(sampled(Some(&readings), 5, 5, latest), (8, 0));
    }
}
