//! How an error of an HTTP body stream reaches the guest.
//!
//! wasmtime-wasi-http hands a body's error to the guest as a `wasi:io/error`
//! whose `http-error-code` only recognises errors that already are error
//! codes, and whose `to-debug-string` prints the host's `Debug` form (with a
//! host backtrace when `RUST_BACKTRACE` is set). Errors of the bodies jobhost
//! streams (`send.rs`: the job's byte limit, a stalled body) would reach the
//! guest as a wall of host internals. Both functions are defined again here:
//! `http-error-code` also maps those errors to their code, and
//! `to-debug-string` gives the error and its causes on one line.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

use crate::plugins::state::JobState;

/// The interfaces and versions wasmtime-wasi(-http) 48 register.
const IO_ERROR: &str = "wasi:io/error@0.2.12";
const HTTP_TYPES: &str = "wasi:http/types@0.2.12";

pub fn add_to_linker(linker: &mut Linker<JobState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker
        .instance(IO_ERROR)?
        .func_wrap("[method]error.to-debug-string", to_debug_string)?;
    linker
        .instance(HTTP_TYPES)?
        .func_wrap("http-error-code", http_error_code)?;
    linker.allow_shadowing(false);
    Ok(())
}

type Guest<'a> = StoreContextMut<'a, JobState>;

fn to_debug_string(
    mut store: Guest<'_>,
    (error,): (Resource<wasmtime::Error>,),
) -> wasmtime::Result<(String,)> {
    let error = store.data_mut().table().get(&error)?;
    let text = format!("{error:#}");
    Ok((text.split_whitespace().collect::<Vec<_>>().join(" "),))
}

fn http_error_code(
    mut store: Guest<'_>,
    (error,): (Resource<wasmtime::Error>,),
) -> wasmtime::Result<(Option<ErrorCode>,)> {
    let error = store.data_mut().table().get(&error)?;
    if let Some(code) = error.downcast_ref::<ErrorCode>() {
        return Ok((Some(code.clone()),));
    }
    Ok((error
        .downcast_ref::<wasmtime_wasi_http::Error>()
        .map(code_of),))
}

/// The code of an error of a body `send.rs` streams.
fn code_of(error: &wasmtime_wasi_http::Error) -> ErrorCode {
    use wasmtime_wasi_http::Error;
    match error {
        Error::InternalError(message) => ErrorCode::InternalError(message.clone()),
        Error::ConnectionReadTimeout => ErrorCode::ConnectionReadTimeout,
        Error::HttpResponseIncomplete => ErrorCode::HttpResponseIncomplete,
        Error::Hyper(hyper) if hyper.is_incomplete_message() => ErrorCode::HttpResponseIncomplete,
        other => ErrorCode::InternalError(Some(other.to_string())),
    }
}
