//! `jobhost schedule`: recurring jobs — add, list, show, remove, pause,
//! resume, run-now.
//!
//! A schedule lives in Redis (its hash under its queue's hash tag, named in
//! the namespace's index), and every `jobhost run` host of the namespace
//! fires it: each tick enqueues exactly one job, whichever hosts run.

use anyhow::bail;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::QueueArgs;
use crate::broker::Redis;
use crate::broker::schedules::{Defined, Edited, Fired, ScheduleStoreError, StoredSchedule};
use crate::envelope::{format_rfc3339_ms, now_ms};
use crate::schedule::{self, CatchUp, CronSpec, Definition};

#[derive(Debug, Args)]
pub struct ScheduleCommandArgs {
    #[command(subcommand)]
    pub command: ScheduleCommand,
    #[command(flatten)]
    pub queue: QueueArgs,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Adds schedule NAME, or replaces its definition (keeping when it last
    /// fired), enqueueing TYPE PAYLOAD on --queue at every tick of --cron.
    Add {
        /// The schedule's name (printable, no whitespace), e.g. nightly-report.
        name: String,
        /// Cron expression: five fields (minute hour day month weekday), or
        /// six with seconds first, e.g. '0 3 * * *' or '*/10 * * * * *'.
        #[arg(long, value_name = "EXPR")]
        cron: String,
        /// Time zone the expression is read in (IANA name).
        #[arg(long, value_name = "ZONE", default_value = "UTC")]
        tz: String,
        /// Ticks missed while no host ran: one job for them all, or none.
        #[arg(long, value_enum, default_value = "one")]
        catch_up: CatchUp,
        /// Job type, e.g. reports.nightly.
        #[arg(value_name = "TYPE")]
        job_type: String,
        /// Payload; `-` reads it from stdin, as any bytes.
        payload: String,
    },
    /// Every schedule: cron, zone, queue, type, state, last and next fire.
    List {
        /// A JSON array, one object per schedule.
        #[arg(long)]
        json: bool,
    },
    /// One schedule in full.
    Show {
        /// The schedule's name.
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Deletes schedule NAME: no more ticks (jobs already enqueued stay).
    Remove {
        /// The schedule's name.
        name: String,
    },
    /// Stops NAME's ticks on every host; no job fires while it is paused.
    Pause {
        /// The schedule's name.
        name: String,
    },
    /// Restarts NAME's ticks from now: ticks missed while paused never fire.
    Resume {
        /// The schedule's name.
        name: String,
    },
    /// Enqueues NAME's job once, now, leaving its ticks as they are.
    RunNow {
        /// The schedule's name.
        name: String,
    },
}

/// One schedule as `list` and `show` print it (and the dashboard shows it).
#[derive(Debug, Serialize)]
pub(crate) struct ScheduleLine {
    pub name: String,
    pub cron: String,
    pub tz: String,
    pub queue: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub catch_up: String,
    pub paused: bool,
    /// The last tick fired (RFC 3339), if any.
    pub last_tick: Option<String>,
    /// When that tick fired (RFC 3339, Redis's clock).
    pub last_fired_at: Option<String>,
    /// The next tick that will fire (RFC 3339); none while paused.
    pub next_fire: Option<String>,
    /// The payload, as text (binary bytes are shown lossily).
    pub payload: String,
    /// Why the stored definition cannot fire, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Every schedule of `namespace`, by name; one that cannot be read is
/// listed as broken, not the end of the list.
pub(crate) async fn schedule_lines(
    redis: &mut Redis,
    namespace: &str,
) -> Result<Vec<ScheduleLine>, ScheduleStoreError> {
    let now = now_ms();
    let mut lines = Vec::new();
    for (name, queue) in redis.schedule_index(namespace).await? {
        match redis.read_schedule(namespace, &name, &queue).await {
            Ok(Some(stored)) => lines.push(ScheduleLine::of(&stored, now)),
            Ok(None) => {}
            Err(error @ ScheduleStoreError::WrongType { .. }) => {
                lines.push(ScheduleLine::broken(name, queue, error.to_string()))
            }
            Err(error) => return Err(error),
        }
    }
    Ok(lines)
}

impl ScheduleLine {
    /// A schedule that cannot be read.
    fn broken(name: String, queue: String, problem: String) -> Self {
        ScheduleLine {
            name,
            cron: String::new(),
            tz: String::new(),
            queue,
            job_type: String::new(),
            catch_up: String::new(),
            paused: false,
            last_tick: None,
            last_fired_at: None,
            next_fire: None,
            payload: String::new(),
            problem: Some(problem),
        }
    }

    fn of(stored: &StoredSchedule, now: u64) -> Self {
        let (next_fire, problem) = match CronSpec::parse(&stored.cron, &stored.tz) {
            Ok(cron) => (schedule::next_fire(&cron, &stored.state, now), None),
            Err(error) => (None, Some(error.to_string())),
        };
        ScheduleLine {
            name: stored.name.clone(),
            cron: stored.cron.clone(),
            tz: stored.tz.clone(),
            queue: stored.queue.clone(),
            job_type: stored.job_type.clone(),
            catch_up: stored.catch_up.clone(),
            paused: stored.state.paused,
            last_tick: stored.state.last_tick.map(format_rfc3339_ms),
            last_fired_at: stored.last_fired_at.map(format_rfc3339_ms),
            next_fire: next_fire.map(format_rfc3339_ms),
            payload: String::from_utf8_lossy(&stored.payload).into_owned(),
            problem,
        }
    }
}

pub async fn execute(args: ScheduleCommandArgs) -> anyhow::Result<i32> {
    let namespace = args.queue.namespace.clone();
    // Checked before Redis is touched: a bad cron or zone fails alone.
    let definition = match &args.command {
        ScheduleCommand::Add {
            name,
            cron,
            tz,
            catch_up,
            job_type,
            payload,
        } => {
            let keys = args.queue.keys()?;
            let payload = super::enqueue::read_payload(Some(payload), None)?;
            Some(Definition::new(
                name,
                cron,
                tz,
                &keys.queue,
                job_type,
                payload,
                *catch_up,
            )?)
        }
        _ => None,
    };
    let mut redis = Redis::connect(&args.queue.redis_url()).await?;
    let namespace = namespace.as_str();
    match args.command {
        ScheduleCommand::Add { name, .. } => {
            let definition = definition.expect("checked above");
            let how = redis.define_schedule(namespace, &definition).await?;
            let next = CronSpec::next_after(&definition.cron, now_ms())
                .map(format_rfc3339_ms)
                .unwrap_or_default();
            match how {
                Defined::Created => println!("added schedule {name}; next tick {next}"),
                Defined::Replaced => println!(
                    "replaced the definition of schedule {name}; its fire state is kept; next tick {next}"
                ),
                Defined::Rearmed => println!(
                    "replaced the definition of schedule {name}; its cron or zone changed, so it counts from now (earlier ticks of the new expression never fire); next tick {next}"
                ),
                Defined::Moved { from } => println!(
                    "replaced the definition of schedule {name}, moved from queue {from} to {}: it counts from now; next tick {next}",
                    definition.queue
                ),
            }
        }
        ScheduleCommand::List { json } => {
            let lines = schedule_lines(&mut redis, namespace).await?;
            if json {
                println!("{}", serde_json::to_string(&lines)?);
            } else if lines.is_empty() {
                println!("no schedules in namespace {namespace}");
            } else {
                print_table(&lines);
            }
        }
        ScheduleCommand::Show { name, json } => {
            let stored = redis.find_schedule(namespace, &name).await?;
            let line = ScheduleLine::of(&stored, now_ms());
            if json {
                println!("{}", serde_json::to_string(&line)?);
            } else {
                let none = || "-".to_owned();
                println!("name           {}", line.name);
                println!("cron           {}", line.cron);
                println!("tz             {}", line.tz);
                println!("queue          {}", line.queue);
                println!("type           {}", line.job_type);
                println!("payload        {}", line.payload);
                println!("catch-up       {}", line.catch_up);
                println!("paused         {}", line.paused);
                println!("last tick      {}", line.last_tick.unwrap_or_else(none));
                println!("last fired at  {}", line.last_fired_at.unwrap_or_else(none));
                println!("next fire      {}", line.next_fire.unwrap_or_else(none));
                if let Some(problem) = line.problem {
                    println!("problem        {problem}");
                }
            }
        }
        ScheduleCommand::Remove { name } => {
            if !redis.remove_schedule(namespace, &name).await? {
                bail!("{}", ScheduleStoreError::Missing(name));
            }
            println!("removed schedule {name}");
        }
        ScheduleCommand::Pause { name } => {
            match redis.set_schedule_paused(namespace, &name, true).await? {
                Edited::Done => {
                    println!("paused schedule {name}: no host fires it until it is resumed")
                }
                Edited::Unchanged => println!("schedule {name} was paused already"),
            }
        }
        ScheduleCommand::Resume { name } => {
            match redis.set_schedule_paused(namespace, &name, false).await? {
                Edited::Done => println!(
                    "resumed schedule {name}: it fires from its next tick (ticks missed while paused do not fire)"
                ),
                Edited::Unchanged => println!("schedule {name} was not paused"),
            }
        }
        ScheduleCommand::RunNow { name } => {
            let stored = redis.find_schedule(namespace, &name).await?;
            let definition = stored.definition()?;
            match redis
                .fire_schedule(namespace, &stored, &definition, None)
                .await?
            {
                Fired::Fired { job_id, .. } => println!("{job_id}"),
                Fired::WrongType { key, reason } => {
                    bail!("{}", ScheduleStoreError::WrongType { key, reason })
                }
                Fired::Gone => bail!("{}", ScheduleStoreError::Missing(name)),
                other => bail!("schedule {name} changed while it was read ({other:?}); try again"),
            }
        }
    }
    Ok(0)
}

fn print_table(lines: &[ScheduleLine]) {
    let width = |get: fn(&ScheduleLine) -> usize, title: &str| {
        lines.iter().map(get).max().unwrap_or(0).max(title.len())
    };
    let name_w = width(|l| l.name.len(), "NAME");
    let cron_w = width(|l| l.cron.len(), "CRON");
    let tz_w = width(|l| l.tz.len(), "TZ");
    let queue_w = width(|l| l.queue.len(), "QUEUE");
    let type_w = width(|l| l.job_type.len(), "TYPE");
    println!(
        "{:<name_w$}  {:<cron_w$}  {:<tz_w$}  {:<queue_w$}  {:<type_w$}  {:<7}  {:<24}  NEXT FIRE",
        "NAME", "CRON", "TZ", "QUEUE", "TYPE", "STATE", "LAST FIRED"
    );
    for line in lines {
        let state = if line.problem.is_some() {
            "broken"
        } else if line.paused {
            "paused"
        } else {
            "active"
        };
        println!(
            "{:<name_w$}  {:<cron_w$}  {:<tz_w$}  {:<queue_w$}  {:<type_w$}  {:<7}  {:<24}  {}",
            line.name,
            line.cron,
            line.tz,
            line.queue,
            line.job_type,
            state,
            line.last_fired_at.as_deref().unwrap_or("-"),
            line.next_fire.as_deref().unwrap_or("-"),
        );
    }
}
