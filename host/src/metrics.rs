//! Counters and gauges of one host, rendered in the Prometheus text format.
//!
//! Hand-rolled rather than a metrics framework: a handful of series, updated
//! once per batch of outcomes, read by one HTTP endpoint.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Distinct (outcome, type, plugin) series kept before new types are counted as `other`,
/// so a producer inventing types cannot grow memory without bound.
const MAX_JOB_SERIES: usize = 1000;
/// Upper bounds of the handler duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 10.0,
];

/// Upper bounds of the queue wait histogram (enqueue → handler start), in seconds.
const WAIT_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 300.0,
];

#[derive(Default)]
struct Histogram {
    /// Per upper bound, how many samples were at or below it.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], seconds: f64) {
        self.counts.resize(bounds.len(), 0);
        for (bound, count) in bounds.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in bounds.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |text: &str| {
            if text.is_empty() {
                String::new()
            } else {
                format!("{{{text}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

/// Finished jobs by outcome, type and plugin, nested so that counting a job of
/// a known series looks it up by `&str` without allocating a key.
/// type → plugin → count.
type TypeCounts = BTreeMap<String, BTreeMap<String, u64>>;

#[derive(Default)]
struct JobCounts {
    /// queue → outcome → type → plugin → count.
    counts: BTreeMap<String, BTreeMap<String, TypeCounts>>,
    series: usize,
}

impl JobCounts {
    fn add(&mut self, queue: &str, outcome: &str, job_type: &str, plugin: &str) {
        if let Some(count) = self
            .counts
            .get_mut(queue)
            .and_then(|outcomes| outcomes.get_mut(outcome))
            .and_then(|types| types.get_mut(job_type))
            .and_then(|plugins| plugins.get_mut(plugin))
        {
            *count += 1;
            return;
        }
        let job_type = if self.series < MAX_JOB_SERIES {
            job_type
        } else {
            "other"
        };
        let count = self
            .counts
            .entry(queue.to_owned())
            .or_default()
            .entry(outcome.to_owned())
            .or_default()
            .entry(job_type.to_owned())
            .or_default()
            .entry(plugin.to_owned())
            .or_insert_with(|| {
                self.series += 1;
                0
            });
        *count += 1;
    }

    /// Every series, ordered by queue, outcome, type, plugin.
    fn iter(&self) -> impl Iterator<Item = (&str, &str, &str, &str, u64)> {
        self.counts.iter().flat_map(|(queue, outcomes)| {
            outcomes.iter().flat_map(move |(outcome, types)| {
                types.iter().flat_map(move |(job_type, plugins)| {
                    plugins.iter().map(move |(plugin, count)| {
                        (
                            queue.as_str(),
                            outcome.as_str(),
                            job_type.as_str(),
                            plugin.as_str(),
                            *count,
                        )
                    })
                })
            })
        })
    }
}

/// Upper bounds of the outbound HTTP request histogram (send → response head), in seconds.
const HTTP_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];
/// Distinct (plugin, origin, status) series of outbound requests kept before
/// new origins are counted as `other` (a guest choosing hosts cannot grow memory).
const MAX_HTTP_SERIES: usize = 1000;

/// Outbound HTTP requests of plugins: counted by plugin, origin and status
/// (a status code, or `denied`, `timeout`, `error`), timed by plugin.
#[derive(Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, String, String), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
}

impl HttpMetrics {
    /// Counts one request; `took` is how long its response head took to come.
    pub fn request_done(&self, plugin: &str, origin: &str, status: &str, took: Option<Duration>) {
        {
            let mut requests = self.requests.lock().expect("metrics lock");
            let mut key = (plugin.to_owned(), origin.to_owned(), status.to_owned());
            if !requests.contains_key(&key) && requests.len() >= MAX_HTTP_SERIES {
                key.1 = "other".to_owned();
            }
            *requests.entry(key).or_insert(0) += 1;
        }
        if let Some(took) = took {
            let mut durations = self.durations.lock().expect("metrics lock");
            durations
                .entry(plugin.to_owned())
                .or_default()
                .observe(&HTTP_BUCKETS, took.as_secs_f64());
        }
    }

    fn render(&self, out: &mut String) {
        out.push_str("# HELP jobhost_http_requests_total Outbound HTTP requests of plugins, by plugin, origin and status.\n");
        out.push_str("# TYPE jobhost_http_requests_total counter\n");
        for ((plugin, origin, status), count) in self.requests.lock().expect("metrics lock").iter()
        {
            let _ = writeln!(
                out,
                "jobhost_http_requests_total{{plugin=\"{}\",origin=\"{}\",status=\"{}\"}} {count}",
                escape(plugin),
                escape(origin),
                escape(status)
            );
        }
        out.push_str("# HELP jobhost_http_request_seconds Time from sending an outbound request to its response head.\n");
        out.push_str("# TYPE jobhost_http_request_seconds histogram\n");
        for (plugin, histogram) in self.durations.lock().expect("metrics lock").iter() {
            let labels = format!("plugin=\"{}\"", escape(plugin));
            histogram.render(out, "jobhost_http_request_seconds", &labels, &HTTP_BUCKETS);
        }
    }
}

/// All metrics of a host.
#[derive(Default)]
pub struct Metrics {
    /// Outbound HTTP of plugins; the wasm runtime holds it too.
    pub http: Arc<HttpMetrics>,
    jobs: Mutex<JobCounts>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    queue_wait: Mutex<Histogram>,
    /// Jobs held back by a fleet-wide limit: (queue, plugin, limit) → count.
    throttled: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    pub in_flight: AtomicU64,
    pub held_bytes: AtomicU64,
    pub retries: AtomicU64,
    pub dlq_writes: AtomicU64,
    pub expired: AtomicU64,
    pub cancelled: AtomicU64,
    pub reclaimed: AtomicU64,
    pub plugin_reloads: AtomicU64,
    pub plugin_load_errors: AtomicU64,
    pub redis_reconnects: AtomicU64,
    /// Whether Redis answered the last command and the reader is consuming.
    pub healthy: AtomicBool,
    /// The plugins serving now: name → (version, content hash).
    serving: Mutex<BTreeMap<String, (String, String)>>,
    /// The queues served: name → paused.
    paused: Mutex<BTreeMap<String, bool>>,
}

impl Metrics {
    /// Counts how long a job waited between its enqueue and its handler's start.
    pub fn job_waited(&self, waited: Duration) {
        self.queue_wait
            .lock()
            .expect("metrics lock")
            .observe(&WAIT_BUCKETS, waited.as_secs_f64());
    }

    /// Counts one finished job.
    pub fn job_finished(
        &self,
        queue: &str,
        outcome: &str,
        job_type: &str,
        plugin: &str,
        duration: Duration,
    ) {
        self.jobs
            .lock()
            .expect("metrics lock")
            .add(queue, outcome, job_type, plugin);
        match outcome {
            "retry" => self.retries.fetch_add(1, Ordering::Relaxed),
            "dead" => self.dlq_writes.fetch_add(1, Ordering::Relaxed),
            "expired" => self.expired.fetch_add(1, Ordering::Relaxed),
            "cancelled" => self.cancelled.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        if plugin != "-" {
            let mut durations = self.durations.lock().expect("metrics lock");
            if !durations.contains_key(plugin) {
                durations.insert(plugin.to_owned(), Histogram::default());
            }
            let histogram = durations.get_mut(plugin).expect("just ensured");
            histogram.observe(&BUCKETS, duration.as_secs_f64());
        }
    }

    /// Counts one job of `queue` held back by fleet-wide limit `limit` of
    /// `plugin` (`rate`, `concurrency`, or `unavailable` when it could not
    /// be asked).
    pub fn job_throttled(&self, queue: &str, plugin: &str, limit: &'static str) {
        let mut throttled = self.throttled.lock().expect("metrics lock");
        let key = (queue.to_owned(), plugin.to_owned(), limit);
        match throttled.get_mut(&key) {
            Some(count) => *count += 1,
            None => {
                throttled.insert(key, 1);
            }
        }
    }

    /// Records whether `queue` is paused.
    pub fn set_paused(&self, queue: &str, paused: bool) {
        let mut queues = self.paused.lock().expect("metrics lock");
        match queues.get_mut(queue) {
            Some(known) => *known = paused,
            None => {
                queues.insert(queue.to_owned(), paused);
            }
        }
    }

    /// Records which plugins serve now (after a load, reload or removal).
    pub fn set_serving(&self, plugins: BTreeMap<String, (String, String)>) {
        *self.serving.lock().expect("metrics lock") = plugins;
    }

    /// Jobs finished since start: queue → outcome → how many.
    pub fn outcome_totals(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut totals: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (queue, outcome, _, _, count) in self.jobs.lock().expect("metrics lock").iter() {
            let outcomes = totals.entry(queue.to_owned()).or_default();
            *outcomes.entry(outcome.to_owned()).or_default() += count;
        }
        totals
    }

    /// The plugins serving now: name → (version, content hash).
    pub fn serving(&self) -> BTreeMap<String, (String, String)> {
        self.serving.lock().expect("metrics lock").clone()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP jobhost_jobs_total Jobs finished, by queue, outcome, type and plugin.\n",
        );
        out.push_str("# TYPE jobhost_jobs_total counter\n");
        for (queue, outcome, job_type, plugin, count) in
            self.jobs.lock().expect("metrics lock").iter()
        {
            let _ = writeln!(
                out,
                "jobhost_jobs_total{{queue=\"{}\",outcome=\"{}\",type=\"{}\",plugin=\"{}\"}} {count}",
                escape(queue),
                escape(outcome),
                escape(job_type),
                escape(plugin)
            );
        }
        out.push_str("# HELP jobhost_throttled_total Jobs held back by a fleet-wide limit of their plugin, by queue, plugin and limit.\n");
        out.push_str("# TYPE jobhost_throttled_total counter\n");
        for ((queue, plugin, limit), count) in self.throttled.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "jobhost_throttled_total{{queue=\"{}\",plugin=\"{}\",limit=\"{limit}\"}} {count}",
                escape(queue),
                escape(plugin)
            );
        }
        out.push_str("# HELP jobhost_queue_paused Whether a queue this host serves is paused (1) or read (0).\n");
        out.push_str("# TYPE jobhost_queue_paused gauge\n");
        for (queue, paused) in self.paused.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "jobhost_queue_paused{{queue=\"{}\"}} {}",
                escape(queue),
                u8::from(*paused)
            );
        }
        out.push_str(
            "# HELP jobhost_plugin_info The plugins serving now, by version and content hash.\n",
        );
        out.push_str("# TYPE jobhost_plugin_info gauge\n");
        for (plugin, (version, hash)) in self.serving.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "jobhost_plugin_info{{plugin=\"{}\",version=\"{}\",hash=\"{}\"}} 1",
                escape(plugin),
                escape(version),
                escape(hash)
            );
        }
        out.push_str(
            "# HELP jobhost_handler_duration_seconds Time to run one job in its plugin.\n",
        );
        out.push_str("# TYPE jobhost_handler_duration_seconds histogram\n");
        for (plugin, histogram) in self.durations.lock().expect("metrics lock").iter() {
            let labels = format!("plugin=\"{}\"", escape(plugin));
            histogram.render(
                &mut out,
                "jobhost_handler_duration_seconds",
                &labels,
                &BUCKETS,
            );
        }
        out.push_str(
            "# HELP jobhost_queue_wait_seconds Time from enqueue to the handler's start.\n",
        );
        out.push_str("# TYPE jobhost_queue_wait_seconds histogram\n");
        self.queue_wait.lock().expect("metrics lock").render(
            &mut out,
            "jobhost_queue_wait_seconds",
            "",
            &WAIT_BUCKETS,
        );
        self.http.render(&mut out);
        let simple: [(&str, &str, &str, &AtomicU64); 10] = [
            (
                "jobhost_jobs_in_flight",
                "gauge",
                "Jobs read and not yet recorded.",
                &self.in_flight,
            ),
            (
                "jobhost_held_bytes",
                "gauge",
                "Bytes of the entries held (read and not yet recorded), within --max-held-bytes.",
                &self.held_bytes,
            ),
            (
                "jobhost_retries_total",
                "counter",
                "Failed attempts scheduled for a retry.",
                &self.retries,
            ),
            (
                "jobhost_dlq_writes_total",
                "counter",
                "Jobs moved to the dead-letter stream.",
                &self.dlq_writes,
            ),
            (
                "jobhost_expired_total",
                "counter",
                "Jobs skipped because they expired.",
                &self.expired,
            ),
            (
                "jobhost_cancelled_total",
                "counter",
                "Jobs cancelled (jobhost cancel), before or while they ran.",
                &self.cancelled,
            ),
            (
                "jobhost_reclaimed_total",
                "counter",
                "Entries reclaimed from dead or hung hosts.",
                &self.reclaimed,
            ),
            (
                "jobhost_plugin_reloads_total",
                "counter",
                "Plugins replaced by a new version of their file.",
                &self.plugin_reloads,
            ),
            (
                "jobhost_plugin_load_errors_total",
                "counter",
                "Plugin files refused.",
                &self.plugin_load_errors,
            ),
            (
                "jobhost_redis_reconnects_total",
                "counter",
                "Times Redis became reachable again.",
                &self.redis_reconnects,
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_jobs_show_up_by_plugin_and_limit() {
        let metrics = Metrics::default();
        metrics.job_throttled("q", "mailer", "rate");
        metrics.job_throttled("q", "mailer", "rate");
        metrics.job_throttled("q", "mailer", "concurrency");
        let text = metrics.render();
        assert!(
            text.contains(
                "jobhost_throttled_total{queue=\"q\",plugin=\"mailer\",limit=\"rate\"} 2\n"
            )
        );
        assert!(text.contains(
            "jobhost_throttled_total{queue=\"q\",plugin=\"mailer\",limit=\"concurrency\"} 1\n"
        ));
    }

    #[test]
    fn finished_jobs_show_up_by_outcome_type_and_plugin() {
        let metrics = Metrics::default();
        metrics.job_finished(
            "default",
            "done",
            "orders.created",
            "orders",
            Duration::from_micros(300),
        );
        metrics.job_finished(
            "default",
            "done",
            "orders.created",
            "orders",
            Duration::from_millis(20),
        );
        metrics.job_finished("default", "retry", "x\"y", "-", Duration::ZERO);
        let text = metrics.render();
        assert!(text.contains(
            "jobhost_jobs_total{queue=\"default\",outcome=\"done\",type=\"orders.created\",plugin=\"orders\"} 2\n"
        ));
        assert!(
            text.contains("jobhost_jobs_total{queue=\"default\",outcome=\"retry\",type=\"x\\\"y\",plugin=\"-\"} 1\n")
        );
        assert!(text.contains(
            "jobhost_handler_duration_seconds_bucket{plugin=\"orders\",le=\"0.0005\"} 1\n"
        ));
        assert!(text.contains("jobhost_handler_duration_seconds_count{plugin=\"orders\"} 2\n"));
        assert!(text.contains("jobhost_retries_total 1\n"));
    }

    #[test]
    fn outbound_requests_show_up_by_plugin_origin_and_status() {
        let metrics = Metrics::default();
        let origin = "http://127.0.0.1:8080";
        metrics
            .http
            .request_done("webhook", origin, "200", Some(Duration::from_millis(3)));
        metrics.http.request_done("webhook", origin, "denied", None);
        let text = metrics.render();
        assert!(text.contains(
            "jobhost_http_requests_total{plugin=\"webhook\",origin=\"http://127.0.0.1:8080\",status=\"200\"} 1\n"
        ), "{text}");
        assert!(text.contains("status=\"denied\"} 1\n"));
        assert!(text.contains("jobhost_http_request_seconds_count{plugin=\"webhook\"} 1\n"));
    }

    #[test]
    fn types_past_the_series_limit_count_as_other() {
        let metrics = Metrics::default();
        for n in 0..MAX_JOB_SERIES {
            metrics.job_finished("default", "done", &format!("t.{n}"), "p", Duration::ZERO);
        }
        metrics.job_finished("default", "done", "t.0", "p", Duration::ZERO);
        metrics.job_finished("default", "done", "t.new", "p", Duration::ZERO);
        let text = metrics.render();
        assert!(text.contains(
            "jobhost_jobs_total{queue=\"default\",outcome=\"done\",type=\"t.0\",plugin=\"p\"} 2\n"
        ));
        assert!(text.contains(
            "jobhost_jobs_total{queue=\"default\",outcome=\"done\",type=\"other\",plugin=\"p\"} 1\n"
        ));
        assert!(!text.contains("t.new"));
    }
}
