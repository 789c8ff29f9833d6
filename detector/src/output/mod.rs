//! Outputs: the alert schema, aggregation of repeats, the sinks alerts are written to, and the
//! human-readable text forms.
pub mod aggregate;
pub mod alert;
pub mod log;
pub mod metrics;
pub mod sink;
pub mod stage;
pub mod text;
