//! A `masklab serve` process on a free loopback port, for the service's tests.
#![allow(dead_code)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Everything the server wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `masklab serve RUNS --addr 127.0.0.1:0 --device cpu EXTRA` and waits until /readyz says ready.
    pub fn start(runs: &[&Path], extra: &[&str]) -> Server {
        // The service answers per face whenever MTCNN's weights are in the cache: tests see an
        // empty cache, so that whole-photo answers do not depend on what this machine fetched
        // (tests of faces pass --face-weights).
        Server::start_with_cache(runs, extra, &std::env::temp_dir().join(format!("masklab-test-empty-cache-{}", std::process::id())))
    }

    /// [`Server::start`] with `cache` as masklab's cache (`MASKLAB_CACHE`: weights fetched there).
    pub fn start_with_cache(runs: &[&Path], extra: &[&str], cache: &Path) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_masklab"));
        cmd.arg("serve");
        for r in runs {
            cmd.arg(r);
        }
        cmd.args(["--addr", "127.0.0.1:0", "--device", "cpu", "--threads", "1"]).args(extra);
        cmd.env("MASKLAB_CACHE", cache);
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start masklab serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("the server did not start:\n{}", log.lock().unwrap()));
        let server = Server { child, addr, log };
        server.wait_ready();
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(r) = raw(&self.addr, b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") {
                if r.status == 200 {
                    return;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(120), "the server never became ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, as a process manager stops a service.
    pub fn terminate(&self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Waits for the process to exit (at most `limit`).
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "the server did not exit within {limit:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer read off a raw socket.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The JSON error's code, checking the error's shape on the way.
    pub fn error_code(&self) -> String {
        assert!(self.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{self:?}");
        let j = self.json();
        assert_eq!(j["error"]["status"].as_u64(), Some(self.status as u64), "{j}");
        assert!(j["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{j}");
        j["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code: {j}")).to_string()
    }
}

/// Sends `request` as is on a new connection and reads one answer (Content-Length framed).
pub fn raw(addr: &str, request: &[u8]) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(request)?;
    read_answer(&mut s)
}

pub fn read_answer(s: &mut TcpStream) -> std::io::Result<Answer> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("connection closed before an answer ({} bytes)", buf.len())));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).expect("a status line");
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let length: usize = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Answer { status, headers, body })
}

/// A POST of `body` with a content type, as raw HTTP/1.1.
pub fn post_raw(addr: &str, path: &str, content_type: &str, body: &[u8]) -> std::io::Result<Answer> {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    req.extend_from_slice(body);
    raw(addr, &req)
}

pub fn get(addr: &str, path: &str) -> Answer {
    raw(addr, format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).expect("GET")
}

/// A multipart/form-data body of `(file name, content type, bytes)` parts, and its content type.
pub fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "masklab-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, kind, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: {kind}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

pub fn jpeg(img: &image::DynamicImage, quality: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality).encode_image(img).unwrap();
    bytes
}

/// A smooth, face-sized test photo that differs with `seed`.
pub fn photo(width: u32, height: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let s = seed as f32 * 0.37;
        image::Rgb([
            (128.0 + 100.0 * (fx * 6.0 + s).sin()) as u8,
            (128.0 + 100.0 * (fy * 5.0 - s).cos()) as u8,
            (128.0 + 90.0 * ((fx + fy) * 4.0 + s * 2.0).sin()) as u8,
        ])
    })
}
