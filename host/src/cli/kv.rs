//! `jobhost kv`: read and repair the key-value buckets of a queue.
//!
//! Writes made here are an operator's, outside any job: they take effect at
//! once, and a job running meanwhile may commit over them.

use std::io::Write;

use anyhow::bail;
use clap::{Args, Subcommand};

use super::QueueArgs;
use crate::broker::Redis;
use crate::plugins::kv::check_bucket_name;

#[derive(Debug, Args)]
pub struct KvArgs {
    #[command(subcommand)]
    pub command: KvCommand,
    #[command(flatten)]
    pub queue: QueueArgs,
}

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// The keys of a bucket, one per line, sorted; without a bucket, the
    /// queue's buckets and their sizes.
    List { bucket: Option<String> },
    /// The value of a key, as stored.
    Get { bucket: String, key: String },
    /// Sets a key.
    Set {
        bucket: String,
        key: String,
        value: String,
    },
    /// Deletes a key.
    Del { bucket: String, key: String },
}

/// Exits 0, or 1 when `get` or `del` finds no such key.
pub async fn execute(args: KvArgs) -> anyhow::Result<i32> {
    let keys = args.queue.keys()?;
    let bucket = match &args.command {
        KvCommand::List { bucket: None } => None,
        KvCommand::List {
            bucket: Some(bucket),
        }
        | KvCommand::Get { bucket, .. }
        | KvCommand::Set { bucket, .. }
        | KvCommand::Del { bucket, .. } => Some(bucket.clone()),
    };
    if let Some(bucket) = &bucket
        && let Err(why) = check_bucket_name(bucket)
    {
        bail!("{why}");
    }
    let mut redis = Redis::connect(&args.queue.redis_url()).await?;
    let mut out = std::io::stdout().lock();
    match args.command {
        KvCommand::List { bucket: None } => {
            for size in redis.kv_buckets(&keys).await? {
                writeln!(out, "{} {}", size.bucket, size.keys)?;
            }
        }
        KvCommand::List {
            bucket: Some(bucket),
        } => {
            for key in redis.kv_keys(&keys, &bucket).await? {
                writeln!(out, "{}", key.escape_debug())?;
            }
        }
        KvCommand::Get { bucket, key } => match redis.kv_get(&keys, &bucket, &key).await? {
            Some(value) => {
                // Printable text as it is; anything else escaped, never raw
                // bytes on a terminal.
                match std::str::from_utf8(&value) {
                    Ok(text) if !text.chars().any(char::is_control) => writeln!(out, "{text}")?,
                    _ => writeln!(out, "{}", value.escape_ascii())?,
                }
            }
            None => {
                eprintln!("no key {key:?} in bucket {bucket} of queue {}", keys.queue);
                return Ok(1);
            }
        },
        KvCommand::Set { bucket, key, value } => {
            redis.kv_set(&keys, &bucket, &key, value.as_bytes()).await?;
        }
        KvCommand::Del { bucket, key } => {
            if !redis.kv_delete(&keys, &bucket, &key).await? {
                eprintln!("no key {key:?} in bucket {bucket} of queue {}", keys.queue);
                return Ok(1);
            }
        }
    }
    Ok(0)
}
