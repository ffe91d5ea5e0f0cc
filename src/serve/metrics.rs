//! The service's Prometheus metrics (the `prometheus-client` crate, OpenMetrics text): requests
//! by route and status, request latency, batch sizes, inference time, queue depth, images and
//! images per second.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The window over which images per second are measured.
const RATE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    batch_size: Histogram,
    inference_seconds: Histogram,
    images: Counter,
    decode_panics: Counter,
    images_per_second: Gauge<f64, AtomicU64>,
    queue_depth: Gauge,
    queue_capacity: Gauge,
    recent: Mutex<VecDeque<(Instant, u64)>>,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. 33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("masklab");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("http_request_duration_seconds", "Time from request to response, by route", latency.clone());
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register("batch_size", "Faces per inference batch", batch_size.clone());
        let inference_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register("inference_seconds", "Time of one inference batch on the device", inference_seconds.clone());
        let images = Counter::default();
        registry.register("images", "Faces classified", images.clone());
        let decode_panics = Counter::default();
        registry.register("decode_panics", "Requests whose decoding or face detection panicked (answered 500)", decode_panics.clone());
        let images_per_second = Gauge::<f64, AtomicU64>::default();
        registry.register("images_per_second", "Faces classified per second over the last 10 seconds", images_per_second.clone());
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Images admitted and not yet answered", queue_depth.clone());
        let queue_capacity = Gauge::default();
        registry.register("queue_capacity", "The most images admitted at once (--queue)", queue_capacity.clone());
        Metrics {
            registry,
            requests,
            latency,
            batch_size,
            inference_seconds,
            images,
            decode_panics,
            images_per_second,
            queue_depth,
            queue_capacity,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests.get_or_create(&RequestLabels { route: route.to_string(), status }).inc();
        self.latency.get_or_create(&RouteLabels { route: route.to_string() }).observe(elapsed.as_secs_f64());
    }

    /// A decoding thread panicked on a request (answered 500).
    pub fn decode_panic(&self) {
        self.decode_panics.inc();
    }

    /// A batch of `faces` ran in `elapsed`.
    pub fn batch(&self, faces: usize, elapsed: Duration) {
        self.batch_size.observe(faces as f64);
        self.inference_seconds.observe(elapsed.as_secs_f64());
        self.images.inc_by(faces as u64);
        let mut recent = self.recent.lock().expect("metrics lock");
        recent.push_back((Instant::now(), faces as u64));
        Self::trim(&mut recent);
    }

    fn trim(recent: &mut VecDeque<(Instant, u64)>) {
        while recent.front().is_some_and(|(t, _)| t.elapsed() > RATE_WINDOW) {
            recent.pop_front();
        }
    }

    /// Faces per second over the last [`RATE_WINDOW`].
    pub fn images_per_second(&self) -> f64 {
        let mut recent = self.recent.lock().expect("metrics lock");
        Self::trim(&mut recent);
        recent.iter().map(|(_, n)| *n).sum::<u64>() as f64 / RATE_WINDOW.as_secs_f64()
    }

    /// The text exposition, with the queue's state as of now.
    pub fn encode(&self, queue_depth: usize, queue_capacity: usize) -> String {
        self.queue_depth.set(queue_depth as i64);
        self.queue_capacity.set(queue_capacity as i64);
        self.images_per_second.set(self.images_per_second());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_holds_every_family_with_its_values() {
        let m = Metrics::new();
        m.request("/v1/predict", 200, Duration::from_millis(12));
        m.request("/v1/predict", 503, Duration::from_millis(1));
        m.batch(3, Duration::from_millis(4));
        m.batch(5, Duration::from_millis(6));
        let text = m.encode(7, 64);
        for line in [
            "masklab_http_requests_total{route=\"/v1/predict\",status=\"200\"} 1",
            "masklab_http_requests_total{route=\"/v1/predict\",status=\"503\"} 1",
            "masklab_http_request_duration_seconds_count{route=\"/v1/predict\"} 2",
            "masklab_batch_size_count 2",
            "masklab_batch_size_sum 8.0",
            "masklab_images_total 8",
            "masklab_queue_depth 7",
            "masklab_queue_capacity 64",
            "masklab_images_per_second 0.8",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
    }
}
