"""py-greeter: the `hello` plugin written in Python, plus a follow-up job
that counts greetings in key-value state and, when configured, reports them
over outbound HTTP.

- `py.greet` `{"name": "Ada"}` -> output `Hello, Ada!`; enqueues
  `py.greeted` `{"name": "Ada"}`, written only if this job succeeds.
- `py.greeted` `{"name": "Ada"}` -> increments `greetings/Ada` (bucket
  granted in py-greeter.toml, committed with the job's ack) and, when the
  manifest's `[config]` sets `notify_url`, POSTs `{"name", "greetings"}`
  there (its origin granted under `[grants] http`); output
  `{"name": "Ada", "greetings": N}`.

A payload that is not JSON is fatal: it never succeeds, so it is
dead-lettered at once. Built by scripts/build-plugins with componentize-py:

    componentize-py -d wit -w plugin componentize app -o py-greeter.wasm
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import atomics, host, wasi_config_store, wasi_keyvalue_store
from wit_world.imports.jobhost_plugin_types import (
    Failure_Fatal,
    Failure_Retry,
    Job,
    LogLevel,
    PluginInfo,
)

import http_out

BUCKET = "greetings"


def fatal(reason: str) -> Err:
    """The exception that dead-letters the job at once with `reason`."""
    return Err(Failure_Fatal(reason))


def retry(reason: str) -> Err:
    """The exception that retries the job after the host's backoff."""
    return Err(Failure_Retry(reason))


def name_of(job: Job) -> str:
    text = job.payload.decode("utf-8", errors="replace").strip()
    if not text:
        return "world"
    try:
        value = json.loads(text)
    except ValueError as error:
        raise fatal(f"payload is not JSON: {error}")
    name = value.get("name") if isinstance(value, dict) else None
    return name if isinstance(name, str) and name else "world"


def greet(job: Job) -> bytes:
    name = name_of(job)
    try:
        host.enqueue("py.greeted", json.dumps({"name": name}).encode())
    except Err as error:
        raise retry(f"enqueue py.greeted: {error.value}")
    return f"Hello, {name}!".encode()


def greeted(job: Job) -> bytes:
    name = name_of(job)
    try:
        bucket = wasi_keyvalue_store.open(BUCKET)
        count = atomics.increment(bucket, name, 1)
    except Err as error:
        # error.value is a wasi:keyvalue error case (Error_AccessDenied,
        # Error_Other(text), ...); the host's text says which manifest line
        # would grant the bucket.
        raise fatal(f"keyvalue {BUCKET}: {getattr(error.value, 'value', None) or error.value}")
    report = {"name": name, "greetings": count}
    try:
        url = wasi_config_store.get("notify_url")
    except Err as error:
        raise fatal(f"config: {getattr(error.value, 'value', None) or error.value}")
    if url:
        try:
            status = http_out.post_json(url, report)
        except http_out.SendError as error:
            raise retry(f"POST {url}: {error}")
        if status >= 500:
            raise retry(f"POST {url}: status {status}")
        if status >= 400:
            raise fatal(f"POST {url}: status {status}")
    host.log(LogLevel.INFO, f"{name} greeted", [("greetings", str(count))])
    return json.dumps(report).encode()


class Handler(exports.Handler):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="py-greeter", version="0.1.0", handles=["py.greet", "py.greeted"]
        )

    def handle(self, job: Job) -> bytes:
        if job.job_type == "py.greet":
            return greet(job)
        if job.job_type == "py.greeted":
            return greeted(job)
        raise fatal(f"py-greeter does not handle {job.job_type}")
