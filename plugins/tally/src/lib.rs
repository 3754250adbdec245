//! Keeps a running tally per customer: each `tally.order` adds one order and
//! its amount to the customer's counters in the `customers` bucket.
//!
//! Both counters are committed with the job's acknowledgement, together or
//! not at all, so a job that is retried is still counted once.

use jobhost_sdk::kv::Bucket;
use jobhost_sdk::{Error, Job, Output};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Order {
    customer: String,
    amount_cents: u64,
}

#[derive(Serialize)]
struct Tally<'a> {
    customer: &'a str,
    orders: u64,
    total_cents: u64,
}

fn handle(job: Job) -> Result<Output, Error> {
    let order: Order = job.json()?;
    if order.customer.trim().is_empty() {
        return Err(Error::fatal("customer is empty"));
    }
    let customers = Bucket::open("customers")?;
    let orders = customers.increment(&format!("{}:orders", order.customer), 1)?;
    let total_cents =
        customers.increment(&format!("{}:cents", order.customer), order.amount_cents)?;
    Output::json(&Tally {
        customer: &order.customer,
        orders,
        total_cents,
    })
}

jobhost_sdk::plugin! {
    name: "tally",
    version: env!("CARGO_PKG_VERSION"),
    handles: ["tally.order"],
    handler: handle,
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_sdk::testing;

    fn order(payload: &str) -> Result<String, Error> {
        handle(Job::new("tally.order", payload)).map(|o| String::from_utf8(o.into_bytes()).unwrap())
    }

    #[test]
    fn counts_add_up_across_jobs() {
        order(r#"{"customer":"c-17","amount_cents":1250}"#).unwrap();
        order(r#"{"customer":"c-17","amount_cents":2000}"#).unwrap();
        let third = order(r#"{"customer":"c-17","amount_cents":900}"#).unwrap();
        assert_eq!(
            third,
            r#"{"customer":"c-17","orders":3,"total_cents":4150}"#
        );
        assert_eq!(
            testing::kv_get("customers", "c-17:cents"),
            Some(b"4150".to_vec())
        );
    }

    #[test]
    fn customers_are_tallied_apart() {
        testing::kv_set("customers", "c-1:orders", "9");
        testing::kv_set("customers", "c-1:cents", "100");
        order(r#"{"customer":"c-2","amount_cents":5}"#).unwrap();
        let c1 = order(r#"{"customer":"c-1","amount_cents":5}"#).unwrap();
        assert_eq!(c1, r#"{"customer":"c-1","orders":10,"total_cents":105}"#);
        assert_eq!(
            testing::kv_keys("customers"),
            ["c-1:cents", "c-1:orders", "c-2:cents", "c-2:orders"]
        );
    }

    #[test]
    fn invalid_orders_are_fatal_and_count_nothing() {
        for payload in [
            "not json",
            r#"{"customer":"c-1"}"#,
            r#"{"customer":"","amount_cents":1}"#,
            r#"{"customer":"c-1","amount_cents":-5}"#,
        ] {
            let error = order(payload).unwrap_err();
            assert!(error.is_fatal(), "{payload}: {error}");
        }
        assert!(testing::kv_keys("customers").is_empty());
    }

    #[test]
    fn a_denied_bucket_is_a_retry_naming_it() {
        testing::deny_bucket("customers");
        let error = order(r#"{"customer":"c-1","amount_cents":1}"#).unwrap_err();
        assert!(!error.is_fatal());
        assert!(error.message().starts_with("kv: customers: "), "{error}");
    }
}
