//! The one parser of stream replies: XREADGROUP / XAUTOCLAIM / XRANGE / XREAD
//! replies into entries and deliveries, keeping entries that are not valid jobs
//! so they can be dead-lettered with their reason.

use redis::Value;

use crate::envelope::{Envelope, EnvelopeError};

/// One stream entry handed to this host.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub entry_id: String,
    pub job: Result<Envelope, Malformed>,
    /// How often Redis has delivered this entry (1 unless it was reclaimed).
    pub deliveries: u64,
}

/// An entry that is not a valid job, with its raw fields for the DLQ.
#[derive(Debug, Clone)]
pub struct Malformed {
    pub error: EnvelopeError,
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Delivery {
    fn from_entry(entry_id: String, pairs: Vec<(String, Vec<u8>)>) -> Self {
        let job = Envelope::from_fields(&entry_id, &pairs).map_err(|error| Malformed {
            error,
            fields: pairs,
        });
        Delivery {
            entry_id,
            job,
            deliveries: 1,
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
    entries
        .into_iter()
        .filter_map(|entry| {
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
        })
        .collect()
}

/// Deliveries of a list of entries (see [`raw_entries`]).
pub fn parse_entries(value: Value) -> Vec<Delivery> {
    raw_entries(value)
        .into_iter()
        .map(|(id, pairs)| Delivery::from_entry(id, pairs))
        .collect()
}

/// Entries of an XREADGROUP reply for one stream (RESP2 array or RESP3 map).
pub fn parse_read_reply(value: Value) -> Vec<Delivery> {
    read_reply_entries(value)
        .into_iter()
        .flat_map(parse_entries)
        .collect()
}

/// The entry lists of an XREADGROUP / XREAD reply, one per stream.
pub fn read_reply_entries(value: Value) -> Vec<Value> {
    let streams: Vec<(Value, Value)> = match value {
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
        _ => return Vec::new(),
    };
    streams.into_iter().map(|(_, entries)| entries).collect()
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

    #[test]
    fn read_reply_yields_valid_and_malformed_entries() {
        let good = Value::Array(vec![
            bulk("1-0"),
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
        ]);
        let bad = Value::Array(vec![bulk("2-0"), Value::Array(vec![bulk("x"), bulk("y")])]);
        let deleted = Value::Array(vec![bulk("3-0"), Value::Nil]);
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("stream"),
            Value::Array(vec![good, bad, deleted]),
        ])]);
        let deliveries = parse_read_reply(reply);
        assert_eq!(deliveries.len(), 2);
        assert_eq!(deliveries[0].entry_id, "1-0");
        assert!(deliveries[0].job.is_ok());
        let malformed = deliveries[1].job.as_ref().unwrap_err();
        assert_eq!(malformed.error, EnvelopeError::Missing("v"));
        assert_eq!(malformed.fields, vec![("x".to_string(), b"y".to_vec())]);
    }
}
