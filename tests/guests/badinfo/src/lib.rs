//! Describes itself with a job type that is not one (it contains a space).

fn handle(_job: jobhost_sdk::Job) -> Result<(), jobhost_sdk::Error> {
    Ok(())
}

jobhost_sdk::plugin! {
    name: "badinfo",
    version: "0.1.0",
    handles: ["not a type"],
    handler: handle,
}
