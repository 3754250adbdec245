"""Outbound HTTP through `wasi:http/outgoing-handler`, blocking: the host
ends every wait at the job's deadline, so no timeout is needed here. Only
origins granted in the manifest are reachable; a request to any other fails
with the host's message naming the manifest line that would grant it."""

import json
from urllib.parse import urlsplit

from componentize_py_types import Err
from wit_world.imports import outgoing_handler, streams
from wit_world.imports.wasi_http_types import (
    ErrorCode_InternalError,
    Fields,
    Method_Post,
    OutgoingBody,
    OutgoingRequest,
    Scheme_Http,
    Scheme_Https,
)


class SendError(Exception):
    """The request got no response: refused by the host, connection failed, ..."""


def post_json(url: str, value) -> int:
    """POSTs `value` as JSON to `url`; returns the response status."""
    parts = urlsplit(url)
    request = OutgoingRequest(Fields.from_list([("content-type", b"application/json")]))
    request.set_method(Method_Post())
    request.set_scheme(Scheme_Https() if parts.scheme == "https" else Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else ""))
    body = request.body()
    # The stream is a child of the body: it must be gone before `finish`.
    with body.write() as stream:
        stream.blocking_write_and_flush(json.dumps(value).encode())
    future = outgoing_handler.handle(request, None)
    OutgoingBody.finish(body, None)
    with future.subscribe() as ready:
        ready.block()
    answer = future.get()  # Ok(Ok(response)) | Ok(Err(error-code)) | Err(()) if taken twice
    if answer is None or isinstance(answer, Err) or isinstance(answer.value, Err):
        raise SendError(describe(answer))
    with answer.value.value as response:
        status = response.status()
        drain(response)
    return status


def drain(response) -> None:
    """Reads and drops the response body, so the connection ends cleanly."""
    with response.consume() as body:
        with body.stream() as stream:
            while True:
                try:
                    stream.blocking_read(16 * 1024)
                except Err as error:
                    if isinstance(error.value, streams.StreamError_Closed):
                        return
                    raise SendError(f"reading the response: {error.value}")


def describe(answer) -> str:
    """The host's own words for a failed send, when it gave some."""
    code = getattr(getattr(answer, "value", None), "value", answer)
    if isinstance(code, ErrorCode_InternalError) and code.value:
        return code.value
    return type(code).__name__.removeprefix("ErrorCode_")
