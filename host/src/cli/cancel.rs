//! `jobhost cancel ID...`: a waiting or delayed job never runs, a running
//! one is stopped by its host; either way its outcome is `cancelled`.

use std::time::Duration;

use clap::Args;

use super::{QueueArgs, parse_duration};
use crate::broker::{CancelReport, Redis};

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Ids of the jobs to cancel (as `enqueue` printed them).
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,
    /// How long `jobhost job ID` shows a cancelled waiting or delayed job
    /// (a running one's outcome is kept by its host's --keep-results).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub keep_result: Duration,
    #[command(flatten)]
    pub queue: QueueArgs,
}

/// Exit 0 when every job was cancelled (or is being stopped), else 1.
pub async fn execute(args: CancelArgs) -> anyhow::Result<i32> {
    let mut redis = Redis::connect(&args.queue.redis_url()).await?;
    let queues = args.queue.lookup_queues(&mut redis).await?;
    let mut code = 0;
    for id in &args.ids {
        let report = redis.cancel_job(&queues, id, args.keep_result).await?;
        let (line, cancelled) = in_words(id, report);
        if !cancelled {
            code = 1;
        }
        println!("{line}");
    }
    Ok(code)
}

/// What became of cancelling job `id`, in one line, and whether it is
/// cancelled (or being stopped).
pub(crate) fn in_words(id: &str, report: CancelReport) -> (String, bool) {
    match report {
        CancelReport::Removed { queue, was } => (
            format!("job {id} in queue {queue}: cancelled while {was}; it will not run"),
            true,
        ),
        CancelReport::Stopped { queue, host } => (
            format!("job {id} in queue {queue}: cancelled; {host} stopped it"),
            true,
        ),
        CancelReport::Stopping { queue, host } => (
            format!(
                "job {id} in queue {queue}: cancel requested; {host} has not stopped it yet \
                 (it does when it sees the request, or the host that reclaims the job does)"
            ),
            true,
        ),
        CancelReport::Finished { queue, outcome } => (
            format!("job {id} in queue {queue}: already finished ({outcome}); nothing to cancel"),
            false,
        ),
        CancelReport::Unknown => (
            format!("job {id}: unknown (not waiting, delayed or running in any queue)"),
            false,
        ),
    }
}
