//! `masklab bench serve`: a load generator for any image-classification endpoint that takes an
//! image as the raw POST body (masklab's `/v1/predict`, or the FastAPI peer in
//! `scripts/serve_torch.py`). For each concurrency level, that many clients send a fixed set of
//! images in turn over keep-alive connections for a fixed time; it reports images per second,
//! latency percentiles and errors.
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `masklab bench serve`: the load generator's settings.
#[derive(clap::Args, Clone, Debug)]
pub struct LoadOptions {
    /// (serve) The endpoint taking an image as the raw POST body.
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/predict")]
    pub url: String,
    /// (serve) Image files or folders of JPEG/PNG files, sent in turn.
    #[arg(long, num_args = 1..)]
    pub images: Vec<PathBuf>,
    /// (serve) Concurrency levels: clients sending at once.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub concurrency: Vec<usize>,
    /// (serve) Measured seconds per level.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// (serve) Unmeasured seconds before each level.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadResult {
    pub url: String,
    pub concurrency: usize,
    pub seconds: f64,
    pub requests: usize,
    pub errors: usize,
    pub images_per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Answers by HTTP status (`error` for a failed connection).
    pub statuses: BTreeMap<String, usize>,
}

/// The image files a list of files and folders names, in a stable order.
pub fn image_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png")))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        bail!("no images in {:?}", paths);
    }
    Ok(out)
}

pub fn run(o: &LoadOptions) -> Result<Vec<LoadResult>> {
    let files = image_files(&o.images)?;
    let bodies: Vec<(Bytes, &'static str)> = files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            let kind = if bytes.starts_with(b"\x89PNG") { "image/png" } else { "image/jpeg" };
            Ok((Bytes::from(bytes), kind))
        })
        .collect::<Result<_>>()?;
    let uri: hyper::Uri = o.url.parse().with_context(|| format!("bad URL {}", o.url))?;
    // One thread: the load generator should take as little of the machine as it can.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build_http();
        let bodies = Arc::new(bodies);
        let mut results = Vec::new();
        for &c in &o.concurrency {
            if o.warmup_seconds > 0.0 {
                level(&client, &uri, &bodies, c, Duration::from_secs_f64(o.warmup_seconds)).await;
            }
            let (elapsed, latencies, statuses) = level(&client, &uri, &bodies, c, Duration::from_secs_f64(o.seconds)).await;
            let requests: usize = statuses.values().sum();
            let ok = latencies.len();
            let pct = |q: f64| if ok == 0 { f64::NAN } else { latencies[((q * ok as f64).ceil() as usize).clamp(1, ok) - 1] };
            results.push(LoadResult {
                url: o.url.clone(),
                concurrency: c,
                seconds: elapsed,
                requests,
                errors: requests - ok,
                images_per_s: ok as f64 / elapsed,
                p50_ms: pct(0.50),
                p95_ms: pct(0.95),
                p99_ms: pct(0.99),
                statuses,
            });
        }
        Ok(results)
    })
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// `clients` clients sending in turn until `duration` has passed: the wall time, the sorted
/// latencies (ms) of the successful answers, and the count of answers by status.
async fn level(client: &HttpClient, uri: &hyper::Uri, bodies: &Arc<Vec<(Bytes, &'static str)>>, clients: usize, duration: Duration) -> (f64, Vec<f64>, BTreeMap<String, usize>) {
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = Vec::new();
    for k in 0..clients.max(1) {
        let (client, uri, bodies) = (client.clone(), uri.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
            let mut i = k;
            while Instant::now() < end {
                let (body, kind) = &bodies[i % bodies.len()];
                i += 1;
                let request = hyper::Request::post(uri.clone()).header("content-type", *kind).body(Full::new(body.clone())).expect("a valid request");
                let t = Instant::now();
                let status = match client.request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        match response.into_body().collect().await {
                            Ok(_) => Some(status),
                            Err(_) => None,
                        }
                    }
                    Err(_) => None,
                };
                let ms = t.elapsed().as_secs_f64() * 1e3;
                let key = status.map(|s| s.as_u16().to_string()).unwrap_or_else(|| "error".into());
                if status.is_some_and(|s| s.is_success()) {
                    latencies.push(ms);
                }
                *statuses.entry(key).or_default() += 1;
            }
            (latencies, statuses)
        }));
    }
    let mut latencies = Vec::new();
    let mut statuses = BTreeMap::new();
    for t in tasks {
        if let Ok((l, s)) = t.await {
            latencies.extend(l);
            for (k, v) in s {
                *statuses.entry(k).or_default() += v;
            }
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    (start.elapsed().as_secs_f64(), latencies, statuses)
}

/// A Markdown table of load results.
pub fn render(results: &[LoadResult]) -> String {
    let mut s = String::from("| url | concurrency | images/s | p50 ms | p95 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for r in results {
        s += &format!("| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n", r.url, r.concurrency, r.images_per_s, r.p50_ms, r.p95_ms, r.p99_ms, r.errors);
    }
    s
}
