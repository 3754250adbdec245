//! Envelope v1: how a job is written as the string fields of one stream entry.
//!
//! Compatible with thinrsmq's envelope v1 (`v`, `type`, `payload`, `produced_at`,
//! optional `trace_id` and `producer`). jobhost adds optional fields of its own;
//! an entry written by any other v1 producer (even plain `redis-cli XADD`) lacks
//! them and gets defaults, with the stream entry id standing in for the job id.

use std::fmt;

use thiserror::Error;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The envelope version this host reads and writes.
pub const VERSION: &str = "1";

/// Field names, shared by the reader and the writer.
pub mod field {
    pub const VERSION: &str = "v";
    pub const TYPE: &str = "type";
    pub const PAYLOAD: &str = "payload";
    pub const PRODUCED_AT: &str = "produced_at";
    pub const TRACE_ID: &str = "trace_id";
    pub const PRODUCER: &str = "producer";
    pub const JOB_ID: &str = "job_id";
    pub const ATTEMPT: &str = "attempt";
    pub const MAX_ATTEMPTS: &str = "max_attempts";
    pub const REPLAY_COUNT: &str = "replay_count";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const REPLY_TO: &str = "reply_to";
    /// The producer's limit key: the job counts against its own bucket of
    /// its plugin's fleet-wide limits.
    pub const LIMIT_KEY: &str = "limit_key";
    /// The producer's unique key (`enqueue --unique KEY`): while the job is
    /// waiting, delayed or running, another enqueue of that key is a duplicate.
    pub const UNIQUE: &str = "unique";
    /// Host-internal: the rate slot (ms, Redis's clock) this job reserved and
    /// waited for; it needs no other rate token.
    pub const RATE_PAID: &str = "rate_paid";
    /// Host-internal: how many times in a row the job waited for a
    /// fleet-wide concurrency slot (its next wait grows with it).
    pub const THROTTLED: &str = "throttled";
    /// The schedule that enqueued the job (`jobhost schedule`).
    pub const SCHEDULE: &str = "schedule";
    /// The schedule's tick the job stands for: the cron instant in ms since
    /// the Unix epoch, the same on every host (absent for `run-now`).
    pub const SCHEDULE_TICK: &str = "schedule_tick";
    /// `1` when the job is the one catch-up run for ticks missed while no
    /// host ran.
    pub const SCHEDULE_CATCH_UP: &str = "schedule_catch_up";
}

/// A job's identity, stable across retries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobId(String);

impl JobId {
    /// A new, time-ordered job id.
    pub fn generate() -> Self {
        JobId(uuid::Uuid::now_v7().to_string())
    }

    /// A job id as Redis holds it (a unique key's holder), taken as it is.
    pub(crate) fn from_stored(id: String) -> Self {
        JobId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job's message type, e.g. `orders.created`: 1 to [`JobType::MAX_LEN`]
/// bytes of printable characters, no whitespace. It comes from producers and
/// guests and lands in log lines, metric labels and routing, so nothing in it
/// may start a new line, move a terminal's cursor or hide other text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobType(String);

impl JobType {
    /// Longest job type, in bytes.
    pub const MAX_LEN: usize = 256;

    pub fn parse(value: &str) -> Result<Self, EnvelopeError> {
        let invalid = |reason: String| EnvelopeError::Invalid {
            field: field::TYPE,
            reason,
        };
        if value.len() > Self::MAX_LEN {
            return Err(invalid(format!(
                "a job type of {} bytes is too long (at most {})",
                value.len(),
                Self::MAX_LEN
            )));
        }
        if value.is_empty() || value.chars().any(|c| !is_printable(c)) {
            return Err(invalid(format!(
                "{value:?} is not a job type (printable characters, no whitespace)"
            )));
        }
        Ok(JobType(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Neither whitespace nor anything a log must escape.
fn is_printable(c: char) -> bool {
    !c.is_whitespace() && !crate::logging::is_unsafe_in_log(c)
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A producer's limit key (`enqueue --limit-key acct_42`): 1 to
/// [`LimitKey::MAX_LEN`] bytes, no control characters (nor anything else a
/// log must escape). It becomes part of Redis key names and log lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitKey(String);

impl LimitKey {
    /// Longest limit key, in bytes.
    pub const MAX_LEN: usize = 200;

    pub fn parse(value: &str) -> Result<Self, EnvelopeError> {
        printable_key(value, field::LIMIT_KEY, "limit key", Self::MAX_LEN).map(LimitKey)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A producer's unique key (`enqueue --unique order-42`), checked like a
/// [`LimitKey`]: 1 to [`UniqueKey::MAX_LEN`] bytes of printable text. It
/// becomes part of a Redis key name (`keys::QueueKeys::unique`) and log lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UniqueKey(String);

impl UniqueKey {
    /// Longest unique key, in bytes.
    pub const MAX_LEN: usize = 200;

    pub fn parse(value: &str) -> Result<Self, EnvelopeError> {
        printable_key(value, field::UNIQUE, "unique key", Self::MAX_LEN).map(UniqueKey)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UniqueKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `value` when it is 1 to `max` bytes with nothing a log must escape: a
/// producer's key (`what`, read from field `name`) that names Redis keys.
fn printable_key(
    value: &str,
    name: &'static str,
    what: &str,
    max: usize,
) -> Result<String, EnvelopeError> {
    let invalid = |reason: String| EnvelopeError::Invalid {
        field: name,
        reason,
    };
    if value.is_empty() || value.len() > max {
        return Err(invalid(format!(
            "a {what} must be 1 to {max} bytes, not {}",
            value.len()
        )));
    }
    if value.chars().any(crate::logging::is_unsafe_in_log) {
        return Err(invalid(format!(
            "{value:?} holds control characters; a {what} is printable text"
        )));
    }
    Ok(value.to_owned())
}

/// Why a stream entry is not a job this host can run.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("unsupported envelope version {0:?} (this host reads v1)")]
    Version(String),
    #[error("field `{0}` is not UTF-8")]
    NotUtf8(&'static str),
    #[error("field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// One job as written on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub job_id: JobId,
    pub job_type: JobType,
    /// Any bytes; most producers write JSON. The other fields are text.
    pub payload: Vec<u8>,
    /// RFC 3339 with nanoseconds, as the producer wrote it.
    pub produced_at: String,
    pub trace_id: Option<String>,
    pub producer: Option<String>,
    /// 1 for the first run; incremented by each retry.
    pub attempt: u32,
    /// Per-job override of the retry limit.
    pub max_attempts: Option<u32>,
    /// How often the job was replayed from the dead-letter stream.
    pub replay_count: u32,
    /// Not run after this instant (RFC 3339).
    pub expires_at: Option<String>,
    /// The reply stream of a producer waiting for the outcome.
    pub reply_to: Option<String>,
    /// The producer's own bucket of its plugin's fleet-wide limits.
    pub limit_key: Option<LimitKey>,
    /// The producer's unique key: the job holds it until its final outcome.
    pub unique: Option<UniqueKey>,
    /// Host-internal: the fleet-wide rate slot (ms) this attempt already
    /// reserved; set while it waits for it, dropped by a retry.
    pub rate_paid: Option<u64>,
    /// Host-internal: consecutive waits for a fleet-wide concurrency slot.
    pub throttled: u32,
    /// What a schedule wrote about the job (`schedule`, `schedule_tick`,
    /// `schedule_catch_up`), kept as written so retries and the DLQ carry it.
    pub schedule: Option<ScheduleFields>,
}

/// The fields a schedule adds to the jobs it enqueues.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScheduleFields {
    /// The schedule's name.
    pub name: String,
    /// The tick (ms since the Unix epoch) as written; `None` for `run-now`.
    pub tick: Option<String>,
    /// Whether the job stands for ticks missed while no host ran.
    pub catch_up: bool,
}

impl Envelope {
    /// A new job, produced now, on its first attempt.
    pub fn new(job_type: JobType, payload: Vec<u8>) -> Self {
        Envelope {
            job_id: JobId::generate(),
            job_type,
            payload,
            produced_at: now_rfc3339(),
            trace_id: None,
            producer: None,
            attempt: 1,
            max_attempts: None,
            replay_count: 0,
            expires_at: None,
            reply_to: None,
            limit_key: None,
            unique: None,
            rate_paid: None,
            throttled: 0,
            schedule: None,
        }
    }

    /// The entry's fields, in the order they are written.
    pub fn to_fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut fields = Vec::with_capacity(8);
        self.for_each_field(|name, value| fields.push((name, value.to_vec())));
        fields
    }

    /// Calls `write` with each field of the entry, in the order they are
    /// written, borrowing rather than copying: how a producer builds its XADD
    /// without an allocation per field.
    pub fn for_each_field(&self, mut write: impl FnMut(&'static str, &[u8])) {
        let mut number = [0u8; 10];
        write(field::VERSION, VERSION.as_bytes());
        write(field::TYPE, self.job_type.0.as_bytes());
        write(field::PAYLOAD, &self.payload);
        write(field::PRODUCED_AT, self.produced_at.as_bytes());
        write(field::JOB_ID, self.job_id.0.as_bytes());
        write(field::ATTEMPT, decimal(self.attempt, &mut number));
        if let Some(trace_id) = &self.trace_id {
            write(field::TRACE_ID, trace_id.as_bytes());
        }
        if let Some(producer) = &self.producer {
            write(field::PRODUCER, producer.as_bytes());
        }
        if let Some(max) = self.max_attempts {
            write(field::MAX_ATTEMPTS, decimal(max, &mut number));
        }
        if let Some(expires_at) = &self.expires_at {
            write(field::EXPIRES_AT, expires_at.as_bytes());
        }
        if let Some(reply_to) = &self.reply_to {
            write(field::REPLY_TO, reply_to.as_bytes());
        }
        if self.replay_count > 0 {
            write(field::REPLAY_COUNT, decimal(self.replay_count, &mut number));
        }
        if let Some(key) = &self.limit_key {
            write(field::LIMIT_KEY, key.0.as_bytes());
        }
        if let Some(key) = &self.unique {
            write(field::UNIQUE, key.0.as_bytes());
        }
        if let Some(paid) = self.rate_paid {
            write(field::RATE_PAID, paid.to_string().as_bytes());
        }
        if self.throttled > 0 {
            write(field::THROTTLED, decimal(self.throttled, &mut number));
        }
        if let Some(schedule) = &self.schedule {
            write(field::SCHEDULE, schedule.name.as_bytes());
            if let Some(tick) = &schedule.tick {
                write(field::SCHEDULE_TICK, tick.as_bytes());
            }
            if schedule.catch_up {
                write(field::SCHEDULE_CATCH_UP, b"1");
            }
        }
    }

    /// Reads an entry from its fields as Redis returns them, in order (of a
    /// field written twice, the last value counts). `entry_id` stands in for the
    /// job id when the producer wrote none.
    pub fn from_fields(
        entry_id: &str,
        fields: &[(String, Vec<u8>)],
    ) -> Result<Self, EnvelopeError> {
        // A linear scan: an entry has a handful of fields, and a map would cost
        // an allocation per field of every job read.
        let text = |name: &'static str| -> Result<Option<&str>, EnvelopeError> {
            fields
                .iter()
                .rev()
                .find(|(key, _)| key == name)
                .map(|(_, bytes)| {
                    std::str::from_utf8(bytes).map_err(|_| EnvelopeError::NotUtf8(name))
                })
                .transpose()
        };
        let required = |name: &'static str| text(name)?.ok_or(EnvelopeError::Missing(name));

        let version = required(field::VERSION)?;
        if version != VERSION {
            return Err(EnvelopeError::Version(version.to_owned()));
        }
        let job_type = JobType::parse(required(field::TYPE)?)?;
        // Redis strings are binary-safe and the guest gets bytes: any payload
        // is taken as it is (protobuf, MessagePack, compressed JSON...).
        let payload = fields
            .iter()
            .rev()
            .find(|(key, _)| key == field::PAYLOAD)
            .map(|(_, bytes)| bytes.clone())
            .ok_or(EnvelopeError::Missing(field::PAYLOAD))?;
        let produced_at = required(field::PRODUCED_AT)?.to_owned();
        let job_id = JobId(text(field::JOB_ID)?.unwrap_or(entry_id).to_owned());
        let attempt = match text(field::ATTEMPT)? {
            Some(value) => parse_count(field::ATTEMPT, value)?,
            None => 1,
        };
        let max_attempts = text(field::MAX_ATTEMPTS)?
            .map(|value| parse_count(field::MAX_ATTEMPTS, value))
            .transpose()?;
        let replay_count = match text(field::REPLAY_COUNT)? {
            Some(value) => value.parse().map_err(|_| EnvelopeError::Invalid {
                field: field::REPLAY_COUNT,
                reason: format!("{value:?} is not a count"),
            })?,
            None => 0,
        };
        Ok(Envelope {
            job_id,
            job_type,
            payload,
            produced_at,
            trace_id: text(field::TRACE_ID)?.map(str::to_owned),
            producer: text(field::PRODUCER)?.map(str::to_owned),
            attempt,
            max_attempts,
            replay_count,
            expires_at: match text(field::EXPIRES_AT)? {
                Some(value) => {
                    parse_rfc3339_ms(value).ok_or_else(|| EnvelopeError::Invalid {
                        field: field::EXPIRES_AT,
                        reason: format!("{value:?} is not an RFC 3339 time"),
                    })?;
                    Some(value.to_owned())
                }
                None => None,
            },
            reply_to: text(field::REPLY_TO)?.map(str::to_owned),
            // Any bytes a raw XADD wrote: a key that is not one makes the
            // entry malformed (dead-lettered with the reason), never a Redis
            // key name of any length.
            limit_key: text(field::LIMIT_KEY)?.map(LimitKey::parse).transpose()?,
            unique: text(field::UNIQUE)?.map(UniqueKey::parse).transpose()?,
            // Host-internal fields: unreadable ones are as good as absent.
            rate_paid: text(field::RATE_PAID)?.and_then(|v| v.parse().ok()),
            throttled: text(field::THROTTLED)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            // Informational: carried as written, never interpreted, so an
            // odd value from a raw XADD harms nothing (non-UTF-8 is dropped).
            schedule: text(field::SCHEDULE)
                .ok()
                .flatten()
                .map(|name| ScheduleFields {
                    name: name.to_owned(),
                    tick: text(field::SCHEDULE_TICK).ok().flatten().map(str::to_owned),
                    catch_up: text(field::SCHEDULE_CATCH_UP).ok().flatten() == Some("1"),
                }),
        })
    }

    /// When the producer wrote the job, in ms since the Unix epoch (0 when unreadable).
    pub fn produced_at_ms(&self) -> u64 {
        parse_rfc3339_ms(&self.produced_at).unwrap_or(0)
    }

    /// When the producer wrote the job, in µs since the Unix epoch (0 when unreadable).
    pub fn produced_at_us(&self) -> u64 {
        OffsetDateTime::parse(&self.produced_at, &Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000).max(0) as u64)
            .unwrap_or(0)
    }

    /// Whether the job's expiry has passed at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at
            .as_deref()
            .and_then(parse_rfc3339_ms)
            .is_some_and(|expiry| expiry <= now_ms)
    }
}

/// An RFC 3339 time in ms since the Unix epoch.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64)
}

/// Formats ms since the Unix epoch as RFC 3339.
pub fn format_rfc3339_ms(ms: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Now, in µs since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `value` in decimal digits, written into `buf`.
fn decimal(value: u32, buf: &mut [u8; 10]) -> &[u8] {
    use std::io::Write;
    let mut rest = &mut buf[..];
    write!(rest, "{value}").expect("a u32 has at most 10 digits");
    let len = 10 - rest.len();
    &buf[..len]
}

fn parse_count(name: &'static str, value: &str) -> Result<u32, EnvelopeError> {
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(EnvelopeError::Invalid {
            field: name,
            reason: format!("{value:?} is not a positive integer"),
        }),
    }
}

/// The current time as RFC 3339 with nanoseconds.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("the current UTC time is always formattable as RFC 3339")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn written_envelope_reads_back_identically() {
        let mut job = Envelope::new(JobType::parse("orders.created").unwrap(), b"{}".to_vec());
        job.trace_id = Some("t-1".into());
        job.max_attempts = Some(3);
        job.expires_at = Some(format_rfc3339_ms(1_795_514_400_123));
        job.limit_key = Some(LimitKey::parse("acct_42").unwrap());
        job.unique = Some(UniqueKey::parse("order-42").unwrap());
        job.rate_paid = Some(1_795_514_400_500);
        job.throttled = 3;
        let written: Vec<(String, Vec<u8>)> = job
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(Envelope::from_fields("1-0", &written).unwrap(), job);
        assert!(job.is_expired(1_795_514_400_123));
        assert!(!job.is_expired(1_795_514_400_122));
    }

    #[test]
    fn plain_v1_entry_uses_entry_id_and_defaults() {
        let entry = fields(&[
            ("v", "1"),
            ("type", "hello.world"),
            ("payload", "hi"),
            ("produced_at", "2026-11-24T10:00:00.123456789Z"),
        ]);
        let job = Envelope::from_fields("1700-0", &entry).unwrap();
        assert_eq!(job.job_id.as_str(), "1700-0");
        assert_eq!(job.attempt, 1);
        assert_eq!(job.max_attempts, None);
        assert_eq!(job.produced_at_ms(), 1_795_514_400_123);
    }

    #[test]
    fn malformed_entries_say_what_is_wrong() {
        let no_type = fields(&[("v", "1"), ("payload", "x"), ("produced_at", "now")]);
        assert_eq!(
            Envelope::from_fields("1-0", &no_type),
            Err(EnvelopeError::Missing("type"))
        );
        let v2 = fields(&[
            ("v", "2"),
            ("type", "a"),
            ("payload", "x"),
            ("produced_at", "t"),
        ]);
        assert_eq!(
            Envelope::from_fields("1-0", &v2),
            Err(EnvelopeError::Version("2".into()))
        );
        let mut bad_utf8 = fields(&[("v", "1"), ("payload", "x"), ("produced_at", "t")]);
        bad_utf8.push(("type".into(), vec![0xff, 0xfe]));
        assert_eq!(
            Envelope::from_fields("1-0", &bad_utf8),
            Err(EnvelopeError::NotUtf8("type"))
        );
    }

    #[test]
    fn a_limit_key_is_short_printable_text() {
        assert!(LimitKey::parse("acct_42").is_ok());
        assert!(LimitKey::parse(&"k".repeat(200)).is_ok());
        assert!(LimitKey::parse(&"k".repeat(201)).is_err());
        assert!(LimitKey::parse("").is_err());
        let error = LimitKey::parse("a\nb").unwrap_err().to_string();
        assert!(
            error.contains("limit_key") && error.contains("control"),
            "{error}"
        );
        let hostile = fields(&[
            ("v", "1"),
            ("type", "a.b"),
            ("payload", "x"),
            ("produced_at", "t"),
            ("limit_key", &"x".repeat(10_000)),
        ]);
        assert!(matches!(
            Envelope::from_fields("1-0", &hostile),
            Err(EnvelopeError::Invalid {
                field: "limit_key",
                ..
            })
        ));
    }

    #[test]
    fn a_unique_key_is_checked_like_a_limit_key() {
        assert!(UniqueKey::parse("order-42").is_ok());
        assert!(UniqueKey::parse(&"k".repeat(200)).is_ok());
        assert!(UniqueKey::parse(&"k".repeat(201)).is_err());
        assert!(UniqueKey::parse("").is_err());
        let error = UniqueKey::parse("a\u{1b}b").unwrap_err().to_string();
        assert!(
            error.contains("field `unique`") && error.contains("unique key"),
            "{error}"
        );
    }

    #[test]
    fn a_binary_payload_is_taken_as_it_is() {
        let mut entry = fields(&[("v", "1"), ("type", "a.b"), ("produced_at", "t")]);
        entry.push(("payload".into(), vec![0xff, 0x00, 0x1b, b'x']));
        let job = Envelope::from_fields("1-0", &entry).unwrap();
        assert_eq!(job.payload, vec![0xff, 0x00, 0x1b, b'x']);
    }

    #[test]
    fn job_types_are_printable_without_whitespace_and_bounded() {
        for good in ["orders.created", "a", "заказ.создан", "x-y_z:1/2"] {
            assert!(JobType::parse(good).is_ok(), "{good}");
        }
        let longest = "t".repeat(JobType::MAX_LEN);
        assert!(JobType::parse(&longest).is_ok());
        for bad in [
            "",
            "a b",
            "a\tb",
            "line\nbreak",
            "\u{1b}[31mred",
            "del\u{7f}",
            "c1\u{9b}",
            "rtl\u{202e}",
            "zero\u{200b}width",
            "nbsp\u{a0}",
        ] {
            let error = JobType::parse(bad).unwrap_err().to_string();
            assert!(error.starts_with("field `type`: "), "{error}");
            assert!(!error.contains(|c: char| c.is_control()), "{error:?}");
        }
        let error = JobType::parse(&format!("{longest}t"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("257 bytes is too long (at most 256)"),
            "{error}"
        );
    }

    #[test]
    fn counts_are_written_in_decimal() {
        let mut buf = [0u8; 10];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(42, &mut buf), b"42");
        assert_eq!(decimal(u32::MAX, &mut buf), b"4294967295");
    }

    #[test]
    fn a_field_written_twice_reads_as_its_last_value() {
        let entry = fields(&[
            ("v", "1"),
            ("type", "a.first"),
            ("payload", "x"),
            ("produced_at", "2026-11-24T10:00:00Z"),
            ("type", "a.second"),
        ]);
        let job = Envelope::from_fields("1-0", &entry).unwrap();
        assert_eq!(job.job_type.as_str(), "a.second");
    }
}
