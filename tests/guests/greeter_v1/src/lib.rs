//! Version 1 of the plugin `greeter`; hot-reload tests swap one for the other.

fn handle(_job: jobhost_sdk::Job) -> Result<&'static str, jobhost_sdk::Error> {
    Ok("greetings from version 1")
}

jobhost_sdk::plugin! {
    name: "greeter",
    version: "1.0.0",
    handles: ["greet.*"],
    handler: handle,
}
