//! MLflow tracking through its REST API 2.0: an experiment by name, one MLflow run per masklab
//! run, params, per-epoch metrics, the run's status, and artifacts uploaded through the
//! server's artifact proxy (`mlflow server --serve-artifacts`, the default since MLflow 2.0).
//!
//! `RUN/mlflow.json` links a masklab run to its MLflow run, so `--resume` continues the same
//! MLflow run instead of starting another.
pub use super::settings::check_url;
use crate::util::write_atomic;
use anyhow::{anyhow, Context, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the server answered when it refused a call.
#[derive(Debug, thiserror::Error)]
#[error("{endpoint}: HTTP {status} {code}: {message}")]
pub struct ApiError {
    pub endpoint: String,
    pub status: u16,
    /// MLflow's error code, e.g. RESOURCE_DOES_NOT_EXIST.
    pub code: String,
    pub message: String,
}

/// A connection to one tracking server.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(url: &str) -> Client {
        let config = ureq::Agent::config_builder()
            // A server that is down or unreachable must cost a training run seconds, not minutes.
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build();
        Client { base: url.trim_end_matches('/').to_string(), agent: config.into() }
    }

    pub fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value> {
        let mut request = self.agent.get(format!("{}/api/2.0/{endpoint}", self.base));
        for (k, v) in query {
            request = request.query(*k, *v);
        }
        self.answer(endpoint, request.call())
    }

    pub fn post(&self, endpoint: &str, body: &Value) -> Result<Value> {
        self.answer(endpoint, self.agent.post(format!("{}/api/2.0/{endpoint}", self.base)).send_json(body))
    }

    /// Uploads `file` to `path` (slash-separated) under the artifact proxy's root.
    pub fn put_artifact(&self, path: &str, file: &Path) -> Result<()> {
        let body = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        let endpoint = format!("mlflow-artifacts/artifacts/{}", encode_path(path));
        let response = self.agent.put(format!("{}/api/2.0/{endpoint}", self.base)).content_type("application/octet-stream").send(body);
        self.answer(&endpoint, response).map(|_| ())
    }

    fn answer(&self, endpoint: &str, response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value> {
        let mut response = response.map_err(|e| anyhow!("{}/api/2.0/{endpoint}: {e}", self.base))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let value: Value = if text.trim().is_empty() { json!({}) } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
        Err(ApiError {
            endpoint: endpoint.to_string(),
            status,
            code: field("error_code").unwrap_or_default(),
            message: field("message").unwrap_or_else(|| value.as_str().unwrap_or("").chars().take(300).collect()),
        }
        .into())
    }
}

/// Path segments percent-encoded, the slashes between them kept.
fn encode_path(path: &str) -> String {
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    path.split('/').map(|s| utf8_percent_encode(s, SEGMENT).to_string()).collect::<Vec<_>>().join("/")
}

fn error_code(e: &anyhow::Error) -> Option<&str> {
    e.downcast_ref::<ApiError>().map(|a| a.code.as_str())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The id of the experiment called `name`, created when missing.
pub fn experiment_id(client: &Client, name: &str) -> Result<String> {
    let by_name = |c: &Client| -> Result<String> {
        let v = c.get("mlflow/experiments/get-by-name", &[("experiment_name", name)])?;
        v["experiment"]["experiment_id"].as_str().map(str::to_string).ok_or_else(|| anyhow!("experiments/get-by-name: no experiment_id in {v}"))
    };
    match by_name(client) {
        Ok(id) => Ok(id),
        Err(e) if error_code(&e) == Some("RESOURCE_DOES_NOT_EXIST") => match client.post("mlflow/experiments/create", &json!({"name": name})) {
            Ok(v) => v["experiment_id"].as_str().map(str::to_string).ok_or_else(|| anyhow!("experiments/create: no experiment_id in {v}")),
            // Another run created it in between.
            Err(e) if error_code(&e) == Some("RESOURCE_ALREADY_EXISTS") => by_name(client),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// `RUN/mlflow.json`: which MLflow run a masklab run logs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunLink {
    pub tracking_uri: String,
    pub experiment_id: String,
    pub run_id: String,
    pub artifact_uri: String,
}

impl RunLink {
    pub fn path(run_dir: &Path) -> PathBuf {
        crate::run_dir::RunDir::new(run_dir).mlflow_file()
    }

    pub fn read(run_dir: &Path) -> Option<RunLink> {
        serde_json::from_slice(&std::fs::read(Self::path(run_dir)).ok()?).ok()
    }
}

/// An MLflow run that a masklab run logs to.
pub struct MlflowRun {
    client: Client,
    pub link: RunLink,
}

/// Batch limits of runs/log-batch.
const MAX_PARAMS_PER_BATCH: usize = 100;
const MAX_METRICS_PER_BATCH: usize = 1000;

impl MlflowRun {
    /// Opens the MLflow run of `run_dir`: the one `RUN/mlflow.json` names when resuming on the
    /// same server, else a new run in `experiment`. Logs `params` that the run does not hold yet.
    /// `tags` are set on a new run when it is created, and on a run reopened for a resume.
    pub fn start(url: &str, experiment: &str, run_dir: &Path, params: &[(String, String)], tags: &[(String, String)], resume: bool) -> Result<MlflowRun> {
        let client = Client::new(url);
        let previous = RunLink::read(run_dir).filter(|l| resume && l.tracking_uri == url);
        let reopened = match previous {
            Some(link) => match client.get("mlflow/runs/get", &[("run_id", &link.run_id)]) {
                Ok(run) => {
                    client.post("mlflow/runs/update", &json!({"run_id": link.run_id, "status": "RUNNING"}))?;
                    Some((link, run))
                }
                Err(e) if error_code(&e) == Some("RESOURCE_DOES_NOT_EXIST") => {
                    tracing::warn!("MLflow run {} of {} is gone from {url}; logging to a new run", link.run_id, run_dir.display());
                    None
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        let was_reopened = reopened.is_some();
        let (link, logged) = match reopened {
            Some((link, run)) => (link, logged_params(&run)),
            None => {
                let experiment_id = experiment_id(&client, experiment)?;
                let name = run_name(run_dir);
                let folder = std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
                let mut all_tags = vec![
                    json!({"key": "mlflow.source.name", "value": "masklab"}),
                    json!({"key": "masklab.run_dir", "value": folder.display().to_string()}),
                    json!({"key": "masklab.version", "value": env!("CARGO_PKG_VERSION")}),
                ];
                all_tags.extend(tags.iter().map(|(k, v)| json!({"key": k, "value": v})));
                let tags = Value::Array(all_tags);
                let v = client.post(
                    "mlflow/runs/create",
                    &json!({"experiment_id": experiment_id, "run_name": name, "start_time": now_ms(), "tags": tags}),
                )?;
                let info = &v["run"]["info"];
                let field = |k: &str| info[k].as_str().map(str::to_string).ok_or_else(|| anyhow!("runs/create: no {k} in {v}"));
                let link = RunLink { tracking_uri: url.to_string(), experiment_id, run_id: field("run_id")?, artifact_uri: field("artifact_uri")? };
                write_atomic(&RunLink::path(run_dir), serde_json::to_string_pretty(&link)?.as_bytes())?;
                (link, BTreeMap::new())
            }
        };
        let this = MlflowRun { client, link };
        if was_reopened && !tags.is_empty() {
            let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
            this.client.post("mlflow/runs/log-batch", &json!({"run_id": this.link.run_id, "tags": tags}))?;
        }
        let mut changed = Vec::new();
        let fresh: Vec<&(String, String)> = params
            .iter()
            .filter(|(k, v)| match logged.get(k) {
                Some(old) if old != v => {
                    changed.push(format!("{k} ({old} -> {v})"));
                    false
                }
                Some(_) => false,
                None => true,
            })
            .collect();
        if !changed.is_empty() {
            // MLflow refuses to change a logged param: the run shows the values it started with.
            tracing::warn!("MLflow keeps the params the run started with; changed on resume: {}", changed.join(", "));
        }
        for chunk in fresh.chunks(MAX_PARAMS_PER_BATCH) {
            let params: Vec<Value> = chunk.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
            this.client.post("mlflow/runs/log-batch", &json!({"run_id": this.link.run_id, "params": params}))?;
        }
        Ok(this)
    }

    /// Logs `(name, value)` metrics at `step`; values that JSON cannot carry (NaN, inf) are left out.
    pub fn log_metrics(&self, step: i64, metrics: &[(String, f64)]) -> Result<()> {
        let timestamp = now_ms();
        let metrics: Vec<Value> = metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| json!({"key": k, "value": v, "timestamp": timestamp, "step": step}))
            .collect();
        for chunk in metrics.chunks(MAX_METRICS_PER_BATCH) {
            self.client.post("mlflow/runs/log-batch", &json!({"run_id": self.link.run_id, "metrics": chunk}))?;
        }
        Ok(())
    }

    pub fn set_tag(&self, key: &str, value: &str) -> Result<()> {
        self.client.post("mlflow/runs/set-tag", &json!({"run_id": self.link.run_id, "key": key, "value": value})).map(|_| ())
    }

    /// Uploads `files` (paths relative to `run_dir`, slash-separated) as artifacts at the same paths.
    pub fn upload(&self, run_dir: &Path, files: &[String]) -> Result<()> {
        let root = proxied_root(&self.link.artifact_uri).ok_or_else(|| {
            anyhow!(
                "the MLflow server stores this run's artifacts at {}, which masklab cannot upload to; \
                 start it with --serve-artifacts (the default) so that it proxies artifact uploads",
                self.link.artifact_uri
            )
        })?;
        for rel in files {
            self.client.put_artifact(&format!("{root}/{rel}"), &run_dir.join(rel))?;
        }
        Ok(())
    }

    /// Ends the run: FINISHED, FAILED or KILLED.
    pub fn end(&self, status: &str) -> Result<()> {
        self.client.post("mlflow/runs/update", &json!({"run_id": self.link.run_id, "status": status, "end_time": now_ms()})).map(|_| ())
    }
}

/// The run folder's name; a fold of a k-fold run is `<k-fold run>/fold-N`, so that folds of
/// different runs tell apart in one experiment.
fn run_name(run_dir: &Path) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let own = name(run_dir).unwrap_or_else(|| "masklab".into());
    match run_dir.parent().filter(|p| crate::run_dir::RunDir::new(p).is_kfold()).and_then(name) {
        Some(parent) => format!("{parent}/{own}"),
        None => own,
    }
}

/// The params an MLflow run already holds (from runs/get).
fn logged_params(run: &Value) -> BTreeMap<String, String> {
    run["run"]["data"]["params"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| Some((p["key"].as_str()?.to_string(), p["value"].as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

/// The artifact proxy's path of an `mlflow-artifacts:` URI (`mlflow-artifacts:/1/<run>/artifacts`,
/// or `mlflow-artifacts://host:port/1/...`); None for a store the client would have to reach itself.
fn proxied_root(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        Some(authority_and_path) => authority_and_path.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => rest,
    };
    Some(path.trim_matches('/').to_string())
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_uris_map_to_proxy_paths() {
        assert_eq!(proxied_root("mlflow-artifacts:/1/abc/artifacts").as_deref(), Some("1/abc/artifacts"));
        assert_eq!(proxied_root("mlflow-artifacts://127.0.0.1:5000/7/abc/artifacts").as_deref(), Some("7/abc/artifacts"));
        assert_eq!(proxied_root("/srv/mlruns/1/abc/artifacts"), None);
        assert_eq!(proxied_root("s3://bucket/1/abc/artifacts"), None);
        assert_eq!(encode_path("1/abc/artifacts/report/confusion matrix.png"), "1/abc/artifacts/report/confusion%20matrix.png");
    }

    #[test]
    fn folds_of_a_kfold_run_are_named_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("cv-run");
        std::fs::create_dir_all(run.join("fold-2")).unwrap();
        assert_eq!(run_name(&run.join("fold-2")), "fold-2");
        std::fs::write(crate::run_dir::RunDir::new(&run).folds_file(), "{}").unwrap();
        assert_eq!(run_name(&run.join("fold-2")), "cv-run/fold-2");
        assert_eq!(run_name(&run), "cv-run");
    }

    #[test]
    fn tracking_urls_are_checked() {
        assert!(check_url("http://127.0.0.1:5000").is_ok());
        assert!(check_url("https://mlflow.example.org/").is_ok());
        for bad in ["127.0.0.1:5000", "ftp://x", "http://"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_closed_port_is_an_error_naming_the_server() {
        // Bind then drop a listener: the port is free and nothing answers there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = experiment_id(&Client::new(&format!("http://127.0.0.1:{port}")), "x").unwrap_err();
        assert!(err.to_string().contains(&port.to_string()), "{err:#}");
    }
}
