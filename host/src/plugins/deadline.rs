//! Blocking WASI host calls that end at the job's deadline (or as it is
//! cancelled).
//!
//! Epoch interruption stops wasm code, not a guest waiting inside a host call:
//! a guest sleeping 60 s in `wasi:io/poll` would hold its job thread for
//! 60 s whatever its time limit. So every WASI p2 call that can wait (the ones
//! wasmtime-wasi runs as async code in sync mode: `poll`, `pollable.block`
//! and the `blocking-*` stream methods) is defined again over the linker's
//! own, after `add_to_linker_sync`: the same wasmtime-wasi code, run until the
//! job's deadline. Past it the call traps with [`DeadlineReached`], which
//! `explain.rs` words as the job's timeout. The other host calls return
//! without waiting (clocks, randomness, a `ready` check, guest output) or are
//! not granted (sockets).

use std::future::Future;
use std::time::Instant;

use thiserror::Error;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi::p2::bindings::io::streams::{
    Host as _, HostInputStream as _, HostOutputStream as _, StreamError as GuestStreamError,
};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamResult};

use super::cancel::{Cancel, Cancelled};
use super::state::JobState;

/// The WASI interfaces `add_to_linker_sync` defines, with the exact version
/// it registers them under (wasmtime-wasi 48's WIT).
const POLL: &str = "wasi:io/poll@0.2.12";
const STREAMS: &str = "wasi:io/streams@0.2.12";

/// A blocking host call reached the job's deadline; it traps the guest.
#[derive(Debug, Error)]
#[error("time limit reached in a blocking host call")]
pub struct DeadlineReached;

/// Replaces the blocking functions of `linker`'s WASI with ones that end at
/// the job's deadline.
pub fn add_to_linker(linker: &mut Linker<JobState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL)?;
    poll.func_wrap("poll", poll_list)?;
    poll.func_wrap("[method]pollable.block", block)?;
    let mut streams = linker.instance(STREAMS)?;
    streams.func_wrap("[method]input-stream.blocking-read", blocking_read)?;
    streams.func_wrap("[method]input-stream.blocking-skip", blocking_skip)?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        blocking_write_and_flush,
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        blocking_write_zeroes_and_flush,
    )?;
    streams.func_wrap("[method]output-stream.blocking-flush", blocking_flush)?;
    streams.func_wrap("[method]output-stream.blocking-splice", blocking_splice)?;
    // Anything defined twice from here on is a mistake again.
    linker.allow_shadowing(false);
    Ok(())
}

/// Runs `call` (wasmtime-wasi's async implementation) on wasmtime-wasi's own
/// runtime, as its sync functions do, but no later than `deadline` and not
/// past the job's cancellation.
fn until<O>(
    deadline: Instant,
    cancel: &Cancel,
    call: impl Future<Output = O>,
) -> wasmtime::Result<O> {
    wasmtime_wasi::runtime::in_tokio(async move {
        tokio::select! {
            // Made inside the runtime: a timer needs one to exist.
            done = tokio::time::timeout_at(deadline.into(), call) => {
                done.map_err(|_elapsed| wasmtime::Error::new(DeadlineReached))
            }
            () = cancel.wait() => Err(wasmtime::Error::new(Cancelled)),
        }
    })
}

/// A stream call's result as the guest sees it: its own error resource, or a trap.
fn for_guest<T>(
    table: &mut ResourceTable,
    result: StreamResult<T>,
) -> wasmtime::Result<Result<T, GuestStreamError>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => Ok(Err(table.convert_stream_error(error)?)),
    }
}

type Guest<'a> = StoreContextMut<'a, JobState>;
type StreamReply<T> = wasmtime::Result<(Result<T, GuestStreamError>,)>;

fn poll_list(
    mut store: Guest<'_>,
    (pollables,): (Vec<Resource<DynPollable>>,),
) -> wasmtime::Result<(Vec<u32>,)> {
    let (deadline, cancel, table) = store.data_mut().deadline_and_table();
    Ok((until(deadline, &cancel, table.poll(pollables))??,))
}

fn block(mut store: Guest<'_>, (pollable,): (Resource<DynPollable>,)) -> wasmtime::Result<()> {
    let (deadline, cancel, table) = store.data_mut().deadline_and_table();
    until(deadline, &cancel, table.block(pollable))?
}

fn blocking_read(
    mut store: Guest<'_>,
    (stream, len): (Resource<DynInputStream>, u64),
) -> StreamReply<Vec<u8>> {
    let (deadline, cancel, table) = store.data_mut().deadline_and_table();
    let result = until(deadline, &cancel, table.blocking_read(stream, len))?;
    Ok((for_guest(table, result)?,))
}

fn blocking_skip(
    mut store: Guest<'_>,
    (stream, len): (Resource<DynInputStream>, u64),
) -> StreamReply<u64> {
    let (deadline, cancel, table) = store.data_mut().deadline_and_table();
    let result = until(deadline, &cancel, table.blocking_skip(stream, len))?;
    Ok((for_guest(table, result)?,))
}

fn blocking_write_and_flush(
    mut store: Guest<'_>,
    (stream, bytes): (Resource<DynOutputStream>, Vec<u8>),
) -> StreamReply<()> {
    let (deadline, cancel, table) = store.data_mut().deadline_and_table();
    let result = until(
        deadline,
        &cancel,
        table.blocking_write_and_flush(stream, bytes),
    )?;
    Ok((for_guest(table, result)?,))
}

fn blocking_write_zeroes_and_flush(
    mut store: Guest<'_>,
    (stream, len): (Resource<DynOutputStream>, u64),
) -> StreamReply<()> {
    let (deadline, cancel, table) = store.data_mut().deadline_and_table();
    let result = until(
        deadline,
        &cancel,
        table.blocking_write_zeroes_and_flush(stream, len),
    )?;
    Ok((for_guest(table, result)?,))
}

fn blocking_flush(
    mut store: Guest<'_>,
    (stream,): (Resource<DynOutputStream>,),
) -> StreamReply<()> {
    let (deadline, cancel, table) = store.data_mut().deadline_and_table();
    let result = until(deadline, &cancel, table.blocking_flush(stream))?;
    Ok((for_guest(table, result)?,))
}

fn blocking_splice(
    mut store: Guest<'_>,
    (dst, src, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64),
) -> StreamReply<u64> {
    let (deadline, cancel, table) = store.data_mut().deadline_and_table();
    let result = until(deadline, &cancel, table.blocking_splice(dst, src, len))?;
    Ok((for_guest(table, result)?,))
}
