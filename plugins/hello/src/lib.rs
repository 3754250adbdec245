//! Greets whoever the payload names: `{"name":"Ada"}` or plain text.

use jobhost_sdk::{Error, Job};

fn handle(job: Job) -> Result<String, Error> {
    let text = job.payload_str()?.trim();
    let name = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => json
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("world")
            .to_owned(),
        Err(_) if text.is_empty() => "world".to_owned(),
        Err(_) => text.to_owned(),
    };
    Ok(format!("Hello, {name}!"))
}

jobhost_sdk::plugin! {
    name: "hello",
    version: env!("CARGO_PKG_VERSION"),
    handles: ["hello.*"],
    handler: handle,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_json_names_plain_text_and_nobody() {
        let greet = |payload: &str| handle(Job::new("hello.x", payload)).unwrap();
        assert_eq!(greet(r#"{"name":"Ada"}"#), "Hello, Ada!");
        assert_eq!(greet("Grace"), "Hello, Grace!");
        assert_eq!(greet(""), "Hello, world!");
    }
}
