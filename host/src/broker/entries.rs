//! The one parser of stream replies: XREADGROUP / XAUTOCLAIM / XRANGE / XREAD
//! replies into entries and deliveries, keeping entries that are not valid jobs
//! so they can be dead-lettered with their reason.

use redis::Value;

use crate::envelope::{Envelope, EnvelopeError};

/// One stream entry handed to this host.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub entry_id: String,
    pub job: Result<Envelope, Unfit>,
    /// How often Redis has delivered this entry (1 unless it was reclaimed).
    pub deliveries: u64,
    /// The entry's bytes this host holds (field names and values; none of an
    /// oversized entry's): its share of `--max-held-bytes`.
    pub bytes: usize,
}

/// An entry that is not a job this host runs.
#[derive(Debug, Clone)]
pub enum Unfit {
    Malformed(Malformed),
    /// Larger than the largest entry the host takes: only its id and size were
    /// read, its fields stay in Redis (dead-lettered in place). `values`:
    /// how many field names and values it has.
    Oversized {
        bytes: usize,
        largest: usize,
        values: usize,
    },
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfit::Malformed(malformed) => write!(f, "malformed entry: {}", malformed.error),
            Unfit::Oversized { bytes, largest, .. } => write!(
                f,
                "entry of {bytes} bytes exceeds the largest the host takes ({largest} bytes)"
            ),
        }
    }
}

/// An entry that is not a valid job, with its raw fields for the DLQ.
#[derive(Debug, Clone)]
pub struct Malformed {
    pub error: EnvelopeError,
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Delivery {
    /// The delivery of an entry read whole; one larger than `largest` bytes
    /// keeps only its size (its fields are dropped here).
    pub(super) fn from_entry(
        entry_id: String,
        pairs: Vec<(String, Vec<u8>)>,
        largest: usize,
    ) -> Self {
        let bytes = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > largest {
            return Delivery::oversized(entry_id, bytes, largest, pairs.len() * 2);
        }
        let job = Envelope::from_fields(&entry_id, &pairs).map_err(|error| {
            Unfit::Malformed(Malformed {
                error,
                fields: pairs,
            })
        });
        Delivery {
            entry_id,
            job,
            deliveries: 1,
            bytes,
        }
    }

    /// Whether only the entry's size was kept: it is larger than the host takes.
    pub fn is_oversized(&self) -> bool {
        matches!(self.job, Err(Unfit::Oversized { .. }))
    }

    fn oversized(entry_id: String, bytes: usize, largest: usize, values: usize) -> Self {
        Delivery {
            entry_id,
            job: Err(Unfit::Oversized {
                bytes,
                largest,
                values,
            }),
            deliveries: 1,
            bytes: 0,
        }
    }
}

/// One stream entry as Redis returns it: id and fields in order.
pub type RawEntry = (String, Vec<(String, Vec<u8>)>);

/// Entries of a list `[[id, [field, value, ...]], ...]`. Entries deleted while
/// pending come back with nil fields; they are skipped (nothing left to run).
pub fn raw_entries(value: Value) -> Vec<RawEntry> {
    let Value::Array(entries) = value else {
        return Vec::new();
    };
    entries.into_iter().filter_map(raw_entry).collect()
}

fn raw_entry(entry: Value) -> Option<RawEntry> {
    let Value::Array(mut parts) = entry else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop()?;
    let id = String::from_utf8(bytes(parts.pop()?)?).ok()?;
    let Value::Array(flat) = fields else {
        return None;
    };
    let mut pairs = Vec::with_capacity(flat.len() / 2);
    let mut flat = flat.into_iter();
    while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
        let key = String::from_utf8(bytes(k)?)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        pairs.push((key, bytes(v)?));
    }
    Some((id, pairs))
}

/// Deliveries of an XREADGROUP reply for one stream (RESP2 array or RESP3
/// map); entries larger than `largest` keep only their size.
pub fn parse_read_reply(value: Value, largest: usize) -> Vec<Delivery> {
    read_reply_entries(value)
        .into_iter()
        .flat_map(raw_entries)
        .map(|(id, pairs)| Delivery::from_entry(id, pairs, largest))
        .collect()
}

/// Deliveries of a `read_entries.lua` list: `[id, [field, value, ...]]` for
/// an entry the host takes, `[id, size, values]` for a larger one.
pub fn screened_entries(value: Value, largest: usize) -> Vec<Delivery> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| match item {
            Value::Array(parts) if matches!(parts.get(1), Some(Value::Int(_))) => {
                let mut parts = parts.into_iter();
                let id = parts.next().and_then(text)?;
                let mut number = || match parts.next() {
                    Some(Value::Int(n)) => Some(n.max(0) as usize),
                    _ => None,
                };
                let (size, values) = (number()?, number()?);
                Some(Delivery::oversized(id, size, largest, values))
            }
            item => raw_entry(item).map(|(id, pairs)| Delivery::from_entry(id, pairs, largest)),
        })
        .collect()
}

/// The entry lists of an XREADGROUP / XREAD reply, one per stream.
pub fn read_reply_entries(value: Value) -> Vec<Value> {
    stream_lists(value)
        .into_iter()
        .map(|(_, entries)| entries)
        .collect()
}

/// The entry lists of an XREADGROUP / XREAD reply with the stream of each.
pub fn read_reply_streams(value: Value) -> Vec<(String, Value)> {
    stream_lists(value)
        .into_iter()
        .filter_map(|(stream, entries)| Some((text(stream)?, entries)))
        .collect()
}

fn stream_lists(value: Value) -> Vec<(Value, Value)> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let v = kv.pop()?;
                    Some((kv.pop()?, v))
                }
                _ => None,
            })
            .collect(),
        Value::Map(items) => items,
        _ => Vec::new(),
    }
}

/// A reply value as text (a status, a bulk string read lossily, a number).
pub fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Value::SimpleString(s) => Some(s),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn good(id: &str) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(vec![
                bulk("v"),
                bulk("1"),
                bulk("type"),
                bulk("a.b"),
                bulk("payload"),
                bulk("{}"),
                bulk("produced_at"),
                bulk("2026-01-01T00:00:00Z"),
            ]),
        ])
    }

    #[test]
    fn read_reply_yields_valid_and_malformed_entries() {
        let bad = Value::Array(vec![bulk("2-0"), Value::Array(vec![bulk("x"), bulk("y")])]);
        let deleted = Value::Array(vec![bulk("3-0"), Value::Nil]);
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("stream"),
            Value::Array(vec![good("1-0"), bad, deleted]),
        ])]);
        let deliveries = parse_read_reply(reply, 1000);
        assert_eq!(deliveries.len(), 2);
        assert_eq!(deliveries[0].entry_id, "1-0");
        assert!(deliveries[0].job.is_ok());
        assert_eq!(deliveries[0].bytes, 49);
        let Err(Unfit::Malformed(malformed)) = &deliveries[1].job else {
            panic!("not malformed: {:?}", deliveries[1].job);
        };
        assert_eq!(malformed.error, EnvelopeError::Missing("v"));
        assert_eq!(malformed.fields, vec![("x".to_string(), b"y".to_vec())]);
    }

    #[test]
    fn entries_larger_than_the_largest_keep_only_their_size_in_order() {
        let reply = Value::Array(vec![
            good("1-0"),
            Value::Array(vec![bulk("2-0"), Value::Int(20 << 20), Value::Int(6)]),
            good("3-0"),
        ]);
        let deliveries = screened_entries(reply, 49);
        let ids: Vec<&str> = deliveries.iter().map(|d| d.entry_id.as_str()).collect();
        assert_eq!(ids, ["1-0", "2-0", "3-0"]);
        assert!(matches!(
            deliveries[1].job,
            Err(Unfit::Oversized { bytes, largest: 49, values: 6 }) if bytes == 20 << 20
        ));
        assert_eq!(deliveries[1].bytes, 0);
        assert!(deliveries[2].job.is_ok());
        let whole = parse_read_reply(
            Value::Array(vec![Value::Array(vec![
                bulk("s"),
                Value::Array(vec![good("4-0")]),
            ])]),
            48,
        );
        assert_eq!(whole[0].bytes, 0, "read whole, then dropped: too large");
        assert!(matches!(
            whole[0].job,
            Err(Unfit::Oversized {
                bytes: 49,
                values: 8,
                ..
            })
        ));
    }
}
