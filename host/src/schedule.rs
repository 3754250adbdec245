//! Recurring schedules: what a schedule is (a name, a cron expression in a
//! time zone, the job it enqueues on which queue, its catch-up policy) and
//! which of its ticks are due. Pure: no Redis, no clock of its own, so every
//! host computes the same ticks from the same definition.
//!
//! A tick's identity is its cron instant in ms since the Unix epoch, not the
//! time a host noticed it: hosts whose clocks differ a little still name the
//! same tick, and `broker/schedule_fire.lua` fires each tick once.
//!
//! Cron expressions are parsed by `croner`: five fields (minute first) or six
//! (seconds first), with its extensions (`L`, `#`, `W`, names of days and
//! months). Daylight saving time follows croner (and Vixie cron): a fixed
//! time that falls in a spring-forward gap runs right after the gap, a fixed
//! time in a fall-back overlap runs once; wildcard and step fields run in
//! every wall-clock occurrence.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use thiserror::Error;

use crate::envelope::{EnvelopeError, JobType};

/// How late a tick may be noticed and still count as due "now": a tick
/// noticed later than this was missed (no host ran, or none could reach
/// Redis), and its schedule's [`CatchUp`] decides.
pub const GRACE: Duration = Duration::from_secs(2);

/// Why a schedule definition was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("schedule name {0:?}: 1 to 200 printable characters, no whitespace")]
    Name(String),
    #[error("cron {cron:?}: {reason} (e.g. '0 3 * * *', or with seconds '*/10 * * * * *')")]
    Cron { cron: String, reason: String },
    #[error("time zone {0:?} is unknown (an IANA name such as UTC or Europe/Paris)")]
    Zone(String),
    #[error("catch-up {0:?}: give one or none")]
    CatchUp(String),
    #[error(transparent)]
    Job(#[from] EnvelopeError),
}

/// What a schedule does about ticks missed while no host ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CatchUp {
    /// One job for all missed ticks (the latest of them), however many.
    #[default]
    One,
    /// Missed ticks are skipped; only ticks due now (within [`GRACE`]) fire.
    None,
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::One => "one",
            CatchUp::None => "none",
        }
    }
}

impl FromStr for CatchUp {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "one" => Ok(CatchUp::One),
            "none" => Ok(CatchUp::None),
            other => Err(ScheduleError::CatchUp(other.to_owned())),
        }
    }
}

/// A schedule's name: it becomes part of a Redis key and of log lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScheduleName(String);

impl ScheduleName {
    pub const MAX_LEN: usize = 200;

    pub fn parse(name: &str) -> Result<Self, ScheduleError> {
        let printable = |c: char| !c.is_whitespace() && !crate::logging::is_unsafe_in_log(c);
        if name.is_empty() || name.len() > Self::MAX_LEN || !name.chars().all(printable) {
            return Err(ScheduleError::Name(name.to_owned()));
        }
        Ok(ScheduleName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScheduleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A cron expression in a time zone, parsed once.
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: Cron,
    text: String,
    zone: Tz,
}

impl CronSpec {
    /// `cron` (five fields, or six with seconds first) in zone `tz` (IANA name).
    pub fn parse(cron: &str, tz: &str) -> Result<Self, ScheduleError> {
        let zone: Tz = tz.parse().map_err(|_| ScheduleError::Zone(tz.to_owned()))?;
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(cron)
            .map_err(|e| ScheduleError::Cron {
                cron: cron.to_owned(),
                reason: e.to_string(),
            })?;
        let spec = CronSpec {
            cron: parsed,
            text: cron.trim().to_owned(),
            zone,
        };
        // An expression that never matches (31 February) is refused here,
        // not discovered by every host forever.
        if spec.next_after(crate::envelope::now_ms()).is_none() {
            return Err(ScheduleError::Cron {
                cron: cron.to_owned(),
                reason: "it never matches a time".to_owned(),
            });
        }
        Ok(spec)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn zone(&self) -> &str {
        self.zone.name()
    }

    fn at(&self, ms: u64) -> Option<DateTime<Tz>> {
        let ms = i64::try_from(ms).ok()?;
        Some(
            Utc.timestamp_millis_opt(ms)
                .single()?
                .with_timezone(&self.zone),
        )
    }

    /// The first tick strictly after `ms`.
    pub fn next_after(&self, ms: u64) -> Option<u64> {
        let tick = self.cron.find_next_occurrence(&self.at(ms)?, false).ok()?;
        u64::try_from(tick.timestamp_millis()).ok()
    }

    /// The last tick at or before `ms`.
    pub fn last_at_or_before(&self, ms: u64) -> Option<u64> {
        let tick = self
            .cron
            .find_previous_occurrence(&self.at(ms)?, true)
            .ok()?;
        u64::try_from(tick.timestamp_millis()).ok()
    }
}

/// What a schedule enqueues, when, and where: the part `schedule add` and
/// `[[schedule]]` define.
#[derive(Debug, Clone)]
pub struct Definition {
    pub name: ScheduleName,
    pub cron: CronSpec,
    pub queue: String,
    pub job_type: JobType,
    pub payload: Vec<u8>,
    pub catch_up: CatchUp,
}

impl Definition {
    /// Checks every part: the name, the cron and zone, the queue name, the
    /// job type and the payload's size (as `enqueue` does).
    pub fn new(
        name: &str,
        cron: &str,
        tz: &str,
        queue: &str,
        job_type: &str,
        payload: Vec<u8>,
        catch_up: CatchUp,
    ) -> Result<Self, ScheduleError> {
        let name = ScheduleName::parse(name)?;
        let cron = CronSpec::parse(cron, tz)?;
        crate::host::check_queue_name(queue).map_err(|reason| EnvelopeError::Invalid {
            field: "queue",
            reason,
        })?;
        let job_type = JobType::parse(job_type)?;
        crate::cli::enqueue::check_payload(&payload).map_err(|e| EnvelopeError::Invalid {
            field: crate::envelope::field::PAYLOAD,
            reason: e.to_string(),
        })?;
        Ok(Definition {
            name,
            cron,
            queue: queue.to_owned(),
            job_type,
            payload,
            catch_up,
        })
    }
}

/// The part of a schedule's state that decides its ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FireState {
    /// The last tick fired (ms), if any.
    pub last_tick: Option<u64>,
    /// Ticks at or before this (ms) never fire: when the schedule was
    /// created, its cron last changed, or it was last resumed.
    pub armed_at: u64,
    pub paused: bool,
}

impl FireState {
    /// Ticks at or before this are done with.
    fn floor(&self) -> u64 {
        self.last_tick.unwrap_or(0).max(self.armed_at)
    }
}

/// A tick to fire now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub tick: u64,
    /// It stands for ticks missed while no host ran.
    pub catch_up: bool,
}

/// The tick to fire at `now` (ms), if any: first the one catch-up tick (the
/// latest tick missed by more than [`GRACE`], under [`CatchUp::One`]), then
/// the ticks due within the grace, earliest first. Called again after each
/// fire, it walks through them.
pub fn due(cron: &CronSpec, catch_up: CatchUp, state: &FireState, now: u64) -> Option<Due> {
    if state.paused {
        return None;
    }
    let floor = state.floor();
    let late = now.saturating_sub(GRACE.as_millis() as u64);
    if catch_up == CatchUp::One
        && let Some(missed) = cron.last_at_or_before(late)
        && missed > floor
    {
        return Some(Due {
            tick: missed,
            catch_up: true,
        });
    }
    let tick = cron.next_after(floor.max(late))?;
    (tick <= now).then_some(Due {
        tick,
        catch_up: false,
    })
}

/// The next tick that will fire after `now`, if the schedule is not paused.
pub fn next_fire(cron: &CronSpec, state: &FireState, now: u64) -> Option<u64> {
    if state.paused {
        return None;
    }
    cron.next_after(state.floor().max(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1000;
    // 2026-01-01T00:00:00Z
    const T0: u64 = 1_767_225_600_000;

    fn every_second() -> CronSpec {
        CronSpec::parse("* * * * * *", "UTC").unwrap()
    }

    #[test]
    fn bad_crons_and_zones_are_refused_with_the_value() {
        let error = CronSpec::parse("61 * * * *", "UTC")
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"61 * * * *\""), "{error}");
        let error = CronSpec::parse("* * *", "UTC").unwrap_err().to_string();
        assert!(error.starts_with("cron"), "{error}");
        assert_eq!(
            CronSpec::parse("0 3 * * *", "Mars/Olympus").unwrap_err(),
            ScheduleError::Zone("Mars/Olympus".into())
        );
        assert!(
            CronSpec::parse("0 0 31 2 *", "UTC").is_err(),
            "never matches"
        );
        assert!(ScheduleName::parse("two words").is_err());
        assert!(ScheduleName::parse("").is_err());
    }

    #[test]
    fn ticks_are_cron_instants_in_the_schedules_zone() {
        let paris = CronSpec::parse("0 3 * * *", "Europe/Paris").unwrap();
        // 03:00 in Paris in winter is 02:00 UTC.
        assert_eq!(paris.next_after(T0), Some(T0 + 2 * 3600 * SECOND));
        let five_fields = CronSpec::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(five_fields.next_after(T0), Some(T0 + 15 * 60 * SECOND));
        assert_eq!(every_second().next_after(T0 + 1), Some(T0 + SECOND));
        assert_eq!(
            every_second().last_at_or_before(T0 + 1500),
            Some(T0 + SECOND)
        );
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> u64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp_millis() as u64
    }

    #[test]
    fn across_daylight_saving_a_fixed_time_runs_once() {
        let cron = CronSpec::parse("30 2 * * *", "Europe/Paris").unwrap();
        // 29 March 2026: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30
        // does not exist and runs right after the gap.
        let spring = cron.next_after(utc(2026, 3, 29, 0, 0)).unwrap();
        assert_eq!(spring, utc(2026, 3, 29, 1, 0));
        assert_eq!(cron.next_after(spring), Some(utc(2026, 3, 30, 0, 30)));
        // 25 October 2026: 03:00 CEST falls back to 02:00 CET (01:00 UTC);
        // 02:30 happens twice and runs at the first.
        let autumn = cron.next_after(utc(2026, 10, 25, 0, 0)).unwrap();
        assert_eq!(autumn, utc(2026, 10, 25, 0, 30));
        assert_eq!(cron.next_after(autumn), Some(utc(2026, 10, 26, 1, 30)));
    }

    #[test]
    fn a_due_tick_fires_once_and_the_next_waits() {
        let cron = every_second();
        let mut state = FireState {
            last_tick: None,
            armed_at: T0 + 100,
            paused: false,
        };
        assert_eq!(due(&cron, CatchUp::One, &state, T0 + 900), None);
        let tick = due(&cron, CatchUp::One, &state, T0 + SECOND + 5).unwrap();
        assert_eq!(
            tick,
            Due {
                tick: T0 + SECOND,
                catch_up: false
            }
        );
        state.last_tick = Some(tick.tick);
        assert_eq!(due(&cron, CatchUp::One, &state, T0 + SECOND + 10), None);
        assert_eq!(
            next_fire(&cron, &state, T0 + SECOND + 10),
            Some(T0 + 2 * SECOND)
        );
    }

    #[test]
    fn missed_ticks_make_one_catch_up_job_or_none() {
        let cron = every_second();
        let state = FireState {
            last_tick: Some(T0),
            armed_at: T0 - 10 * SECOND,
            paused: false,
        };
        let now = T0 + 60 * SECOND + 300;
        // One: the latest missed tick, once, then the tick due now.
        let first = due(&cron, CatchUp::One, &state, now).unwrap();
        assert_eq!(
            first,
            Due {
                tick: now - 300 - 2 * SECOND,
                catch_up: true
            }
        );
        let after = FireState {
            last_tick: Some(first.tick),
            ..state
        };
        let second = due(&cron, CatchUp::One, &after, now).unwrap();
        assert_eq!(
            second,
            Due {
                tick: first.tick + SECOND,
                catch_up: false
            }
        );
        // None: straight to the ticks within the grace.
        let only = due(&cron, CatchUp::None, &state, now).unwrap();
        assert_eq!(
            only,
            Due {
                tick: first.tick + SECOND,
                catch_up: false
            }
        );
    }

    #[test]
    fn a_paused_schedule_fires_nothing_and_resuming_skips_what_it_missed() {
        let cron = every_second();
        let paused = FireState {
            last_tick: Some(T0),
            armed_at: T0,
            paused: true,
        };
        assert_eq!(due(&cron, CatchUp::One, &paused, T0 + 60 * SECOND), None);
        assert_eq!(next_fire(&cron, &paused, T0), None);
        // Resumed at T0 + 60 s: armed then, so nothing before fires.
        let resumed = FireState {
            armed_at: T0 + 60 * SECOND + 1,
            paused: false,
            ..paused
        };
        assert_eq!(
            due(&cron, CatchUp::One, &resumed, T0 + 60 * SECOND + 2),
            None
        );
    }
}
