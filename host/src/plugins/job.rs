//! The guest's view of a job, made from its envelope: the one place that
//! decides what a handler is told.

use crate::envelope::Envelope;

use super::bindings::Job;

impl Job {
    /// The job `envelope` carries, under an attempt limit of `max_attempts`
    /// (whichever of the job's, the plugin's or the host's applies).
    /// `produced_at_ms` is the envelope's `produced_at` in ms, which callers
    /// on the job path have parsed already.
    pub fn from_envelope(envelope: &Envelope, max_attempts: u32, produced_at_ms: u64) -> Self {
        Job {
            id: envelope.job_id.to_string(),
            job_type: envelope.job_type.to_string(),
            payload: envelope.payload.clone(),
            attempt: envelope.attempt,
            max_attempts,
            trace_id: envelope.trace_id.clone(),
            enqueued_at_ms: produced_at_ms,
        }
    }
}
