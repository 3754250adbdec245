//! Accepts new orders: validates them, logs, and emits `orders.confirmed`.

use jobhost_sdk::{Error, Job, Output};
use serde::Deserialize;

#[derive(Deserialize)]
struct Order {
    id: u64,
    customer: Option<String>,
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    sku: String,
    qty: u32,
    price_cents: u64,
}

fn handle(job: Job) -> Result<Output, Error> {
    match job.job_type() {
        "orders.created" => accept(job),
        _ => confirm(job),
    }
}

fn accept(job: Job) -> Result<Output, Error> {
    let order: Order = job.json()?;
    if order.id == 0 {
        return Err(Error::fatal("order id must be positive"));
    }
    let mut total_cents: u64 = 0;
    for item in &order.items {
        if item.sku.trim().is_empty() {
            return Err(Error::fatal(format!(
                "order {}: an item has an empty sku",
                order.id
            )));
        }
        if item.qty == 0 {
            return Err(Error::fatal(format!(
                "order {}: {} has quantity 0",
                order.id, item.sku
            )));
        }
        total_cents += u64::from(item.qty) * item.price_cents;
    }
    let id = order.id.to_string();
    let customer = order.customer.as_deref().unwrap_or("-");
    jobhost_sdk::log(
        jobhost_sdk::Level::Info,
        "order accepted",
        &[
            ("order", &id),
            ("customer", customer),
            ("total_cents", &total_cents.to_string()),
        ],
    );
    jobhost_sdk::enqueue_json("orders.confirmed", &serde_json::json!({ "id": order.id }))?;
    Output::json(&serde_json::json!({ "accepted": order.id, "total_cents": total_cents }))
}

fn confirm(job: Job) -> Result<Output, Error> {
    #[derive(Deserialize)]
    struct Confirmed {
        id: u64,
    }
    let confirmed: Confirmed = job.json()?;
    jobhost_sdk::info!("order {} confirmed", confirmed.id);
    Ok(format!("confirmed {}", confirmed.id).into())
}

jobhost_sdk::plugin! {
    name: "orders",
    version: env!("CARGO_PKG_VERSION"),
    handles: ["orders.created", "orders.confirmed"],
    handler: handle,
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_sdk::testing;

    #[test]
    fn valid_order_is_accepted_and_confirmed_by_a_follow_up() {
        let job = Job::new(
            "orders.created",
            r#"{"id":7,"items":[{"sku":"tea","qty":2,"price_cents":450}]}"#,
        );
        let output = handle(job).unwrap().into_bytes();
        assert_eq!(output, br#"{"accepted":7,"total_cents":900}"#);
        assert_eq!(
            testing::take_enqueued(),
            vec![("orders.confirmed".to_string(), br#"{"id":7}"#.to_vec())]
        );
        assert_eq!(testing::take_logs()[0].message, "order accepted");
    }

    #[test]
    fn minimal_order_needs_only_an_id() {
        assert!(handle(Job::new("orders.created", r#"{"id":1}"#)).is_ok());
    }

    #[test]
    fn invalid_orders_are_fatal_and_emit_nothing() {
        for payload in [
            "not json",
            r#"{"customer":"x"}"#,
            r#"{"id":0}"#,
            r#"{"id":3,"items":[{"sku":"tea","qty":0,"price_cents":1}]}"#,
            r#"{"id":3,"items":[{"sku":" ","qty":1,"price_cents":1}]}"#,
        ] {
            let error = handle(Job::new("orders.created", payload)).unwrap_err();
            assert!(error.is_fatal(), "{payload}: {error}");
        }
        assert!(testing::take_enqueued().is_empty());
    }
}
