//! Prometheus metrics at `/metrics`: HTTP requests by route and status with latency,
//! commands by type and outcome with latency, append latency, projection positions, lag
//! and events applied, and the revoked-token set's size.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets (seconds) from 100 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the process-wide recorder once; later calls return the same handle.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "chronicle_http_requests_total",
        "HTTP requests by method, route and status"
    );
    describe_histogram!(
        "chronicle_http_request_duration_seconds",
        "HTTP request latency by method and route"
    );
    describe_counter!("chronicle_commands_total", "Commands by type and outcome");
    describe_counter!(
        "chronicle_command_conflicts_total",
        "Appends that lost a race for their stream's head (the command is decided again)"
    );
    describe_histogram!(
        "chronicle_command_duration_seconds",
        "Command latency by type"
    );
    describe_histogram!(
        "chronicle_append_duration_seconds",
        "Latency of one append to the log"
    );
    describe_gauge!(
        "chronicle_projection_position",
        "Log position each projection has applied"
    );
    describe_gauge!(
        "chronicle_projection_lag",
        "Events between the log's end and each projection"
    );
    describe_counter!(
        "chronicle_projection_events_applied_total",
        "Events applied by projectors in this process"
    );
    describe_gauge!(
        "chronicle_revoked_tokens",
        "Size of this process's revoked-token set"
    );
    describe_gauge!("chronicle_log_position", "The log's last position");
}
