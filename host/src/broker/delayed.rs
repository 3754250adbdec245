//! How a job waits in a queue's delayed set: as one sorted-set member holding
//! the entry's fields, which `promote_due.lua` hands to XADD when it is due.
//!
//! Members are MessagePack arrays of byte strings, so any payload bytes
//! survive a retry (Redis's Lua has `cmsgpack`; JSON could not carry bytes
//! that are not UTF-8). Only the original format's fixraw/raw16/raw32 and
//! fixarray/array16/array32 forms are written, which every Redis decodes.
//! The same job at the same attempt always encodes to the same member, so
//! writing it twice cannot add a second copy.

use crate::envelope::Envelope;

/// A delayed job as a member of the sorted set.
pub fn member(job: &Envelope) -> Vec<u8> {
    let mut values = 0;
    job.for_each_field(|_, _| values += 2);
    let mut out = Vec::with_capacity(96 + job.payload.len());
    array_header(&mut out, values);
    job.for_each_field(|name, value| {
        raw(&mut out, name.as_bytes());
        raw(&mut out, value);
    });
    out
}

/// The fields of a delayed-set member (either format), in order; `None`
/// when it is not a list of fields.
pub fn fields(member: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let values: Vec<Vec<u8>> = if member.first() == Some(&b'[') {
        let texts: Vec<String> = serde_json::from_slice(member).ok()?;
        texts.into_iter().map(String::into_bytes).collect()
    } else {
        let mut rest = member;
        let count = take_header(&mut rest, 0x90, 0xdc, 0xdd)?;
        let values = (0..count)
            .map(|_| {
                let len = take_header(&mut rest, 0xa0, 0xda, 0xdb)?;
                let (value, tail) = rest.split_at_checked(len)?;
                rest = tail;
                Some(value.to_vec())
            })
            .collect::<Option<Vec<_>>>()?;
        if !rest.is_empty() {
            return None;
        }
        values
    };
    if !values.len().is_multiple_of(2) {
        return None;
    }
    let mut pairs = values.into_iter();
    let mut fields = Vec::new();
    while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
        fields.push((String::from_utf8(name).ok()?, value));
    }
    Some(fields)
}

/// Reads one length header of the forms written here (fix, 16-bit, 32-bit).
fn take_header(rest: &mut &[u8], fix: u8, wide16: u8, wide32: u8) -> Option<usize> {
    let (&first, tail) = rest.split_first()?;
    let fix_mask = if fix == 0x90 { 0xf0 } else { 0xe0 };
    let (len, tail) = match first {
        b if b & fix_mask == fix => (usize::from(b & !fix_mask), tail),
        b if b == wide16 => {
            let (bytes, tail) = tail.split_first_chunk::<2>()?;
            (usize::from(u16::from_be_bytes(*bytes)), tail)
        }
        b if b == wide32 => {
            let (bytes, tail) = tail.split_first_chunk::<4>()?;
            (u32::from_be_bytes(*bytes) as usize, tail)
        }
        _ => return None,
    };
    *rest = tail;
    Some(len)
}

fn array_header(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=15 => out.push(0x90 | len as u8),
        16..=0xffff => {
            out.push(0xdc);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdd);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

fn raw(out: &mut Vec<u8>, bytes: &[u8]) {
    match bytes.len() {
        0..=31 => out.push(0xa0 | bytes.len() as u8),
        32..=0xffff => {
            out.push(0xda);
            out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        }
        len => {
            out.push(0xdb);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::JobType;

    #[test]
    fn members_are_msgpack_arrays_of_the_fields_and_stable() {
        let job = Envelope::new(JobType::parse("a.b").unwrap(), vec![0xff, 0x00]);
        let member = member(&job);
        let fields = job.to_fields();
        assert_eq!(member[0], 0x90 | (fields.len() * 2) as u8);
        // "v" "1" first, as written to a stream.
        assert_eq!(&member[1..5], &[0xa1, b'v', 0xa1, b'1']);
        assert!(member.windows(3).any(|w| w == [0xa2, 0xff, 0x00]));
        assert_eq!(member, super::member(&job), "the same job, the same member");
    }

    #[test]
    fn members_decode_to_the_fields_they_were_made_of() {
        let mut job = Envelope::new(JobType::parse("a.b").unwrap(), vec![b'x'; 70_000]);
        job.payload.extend_from_slice(&[0xff, 0x00]);
        let written: Vec<(String, Vec<u8>)> = job
            .to_fields()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        assert_eq!(fields(&member(&job)), Some(written));
        let legacy = br#"["v","1","type","a.b"]"#;
        assert_eq!(
            fields(legacy),
            Some(vec![
                ("v".to_owned(), b"1".to_vec()),
                ("type".to_owned(), b"a.b".to_vec())
            ])
        );
        assert_eq!(fields(b"\x92\xa1v"), None, "truncated");
        assert_eq!(fields(b"garbage"), None);
    }

    #[test]
    fn long_values_get_wider_headers() {
        let mut out = Vec::new();
        raw(&mut out, &[b'x'; 40]);
        assert_eq!(&out[..3], &[0xda, 0, 40]);
        let mut out = Vec::new();
        raw(&mut out, &vec![b'x'; 70_000]);
        assert_eq!(&out[..5], &[0xdb, 0, 1, 0x11, 0x70]);
        let mut out = Vec::new();
        array_header(&mut out, 20);
        assert_eq!(out, [0xdc, 0, 20]);
    }
}
