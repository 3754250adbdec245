//! The end-to-end test harness.
