//! `masklab serve` over a loopback port: every endpoint, every limit answered with its status and
//! a JSON error, a burst beyond the queue, malformed bodies, graceful shutdown, and the service's
//! probabilities equal to `masklab predict --probs` for the same images.
mod common;
use common::serve::{get, jpeg, multipart, photo, png, post_raw, raw, read_answer, Answer, Server};
use common::{demo, masklab, read_probs, stderr, train_tiny};
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

/// A dataset and a tiny trained, tuned run, made once for every test of this file.
fn trained() -> &'static (PathBuf, PathBuf) {
    static RUN: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve_api");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        demo(&dir, 8, 21);
        let run = dir.join("run");
        let out = train_tiny(&dir, &run, &["train.epochs=1"]);
        assert!(out.status.success(), "{}", stderr(&out));
        // Tuned decision biases: serve must apply them as predict does (--force: applied even
        // when a one-epoch model's held-out F1 does not rise, which is chance here).
        let out = masklab(&["tune", run.to_str().unwrap(), "--force"]);
        assert!(out.status.success(), "{}", stderr(&out));
        (dir, run)
    })
}

fn probs_of(face: &serde_json::Value) -> Vec<f64> {
    face["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn the_service_answers_what_predict_writes_and_every_endpoint_answers() {
    let (dir, run) = trained();
    let out_dir = dir.join("predict-equality");
    std::fs::create_dir_all(&out_dir).unwrap();
    let (sub, probs) = (out_dir.join("sub.csv"), out_dir.join("probs.csv"));
    let eval = dir.join("eval");
    let out = masklab(&[
        "predict", run.to_str().unwrap(), eval.to_str().unwrap(), "--out", sub.to_str().unwrap(), "--probs", probs.to_str().unwrap(),
        "--device", "cpu", "--tta", "flip",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("tune.json"), "predict applies the tuned biases: {}", stderr(&out));
    let expected = read_probs(&probs);
    let answers: Vec<i64> = std::fs::read_to_string(&sub).unwrap().lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();

    let server = Server::start(&[run], &["--tta", "flip", "--max-images", "64"]);
    let addr = server.addr.as_str();
    let info = std::fs::read_to_string(eval.join("info.csv")).unwrap();
    let files: Vec<(String, PathBuf)> = info
        .lines()
        .skip(1)
        .map(|l| {
            let id = l.split(',').next().unwrap().to_string();
            (id.clone(), eval.join("images").join(&id))
        })
        .collect();
    assert!(files.len() >= 4);
    let labels = ["Wear", "Incorrect", "NotWear"];
    for (((id, path), (pid, want)), answer) in files.iter().zip(&expected).zip(&answers) {
        assert_eq!(id, pid);
        let bytes = std::fs::read(path).unwrap();
        let r = post_raw(addr, "/v1/predict", "image/jpeg", &bytes).unwrap();
        assert_eq!(r.status, 200, "{id}: {}", r.text());
        let j = r.json();
        let face = &j["images"][0]["faces"][0];
        let got = probs_of(face);
        assert!(max_diff(&got, want) < 1e-5, "{id}: service {got:?} vs predict {want:?}");
        assert_eq!(face["class"].as_i64(), Some(*answer), "{id}: the decided class is predict's");
        assert_eq!(face["whole_image"], true);
        let class = *answer as usize;
        let bands = ["<30", "30-59", ">=60"];
        let label = format!("{}/{}/{}", labels[class / 6], ["Male", "Female"][(class / 3) % 2], bands[class % 3]);
        assert_eq!(face["label"].as_str(), Some(label.as_str()));
        let (w, h) = (j["images"][0]["width"].as_f64().unwrap(), j["images"][0]["height"].as_f64().unwrap());
        assert_eq!(face["box"], serde_json::json!([0.0, 0.0, w, h]));
        let mask: f64 = got[..6].iter().sum();
        assert!((face["mask"]["probabilities"][0]["probability"].as_f64().unwrap() - mask).abs() < 1e-5);
        assert_eq!(face["mask"]["probabilities"][0]["label"], "Wear");
        for task in ["mask", "gender", "age"] {
            let sum: f64 = face[task]["probabilities"].as_array().unwrap().iter().map(|p| p["probability"].as_f64().unwrap()).sum();
            assert!((sum - 1.0).abs() < 1e-4, "{task} marginals sum to {sum}");
        }
    }

    // Several files in one multipart request: the same answers, in the order sent, named.
    let blobs: Vec<Vec<u8>> = files.iter().map(|(_, p)| std::fs::read(p).unwrap()).collect();
    let parts: Vec<(&str, &str, &[u8])> = files.iter().zip(&blobs).map(|((id, _), b)| (id.as_str(), "image/jpeg", b.as_slice())).collect();
    let (ct, body) = multipart(&parts);
    let r = post_raw(addr, "/v1/predict", &ct, &body).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let images = j["images"].as_array().unwrap();
    assert_eq!(images.len(), files.len());
    for (img, ((id, _), (_, want))) in images.iter().zip(files.iter().zip(&expected)) {
        assert_eq!(img["name"].as_str(), Some(id.as_str()));
        assert!(max_diff(&probs_of(&img["faces"][0]), want) < 1e-5, "{id} in a multipart request");
    }

    // The model's identity: the run, its checkpoint's SHA-256, the biases applied.
    let model = j["model"].clone();
    let sha = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(std::fs::read(run.join("best.safetensors")).unwrap());
        digest.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert_eq!(model["runs"][0]["checkpoints"][0]["sha256"].as_str(), Some(sha.as_str()), "{model}");
    assert_eq!(model["runs"][0]["tuned"], true);
    assert_eq!(model["tta"], "flip");
    assert_eq!(model["age_bounds"], serde_json::json!([30, 60]));
    assert_eq!(model["id"].as_str().unwrap().len(), 16);
    assert_eq!(get(addr, "/v1/model").json(), model);

    // The other endpoints.
    let health = get(addr, "/healthz");
    assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("ok")));
    let ready = get(addr, "/readyz");
    assert_eq!((ready.status, ready.json()["status"].as_str()), (200, Some("ready")));
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.header("content-security-policy").unwrap().contains("connect-src 'self'"));
    let html = page.text();
    assert!(html.contains("id=\"file\"") && html.contains("getUserMedia") && !html.contains("https://"), "the page is self-contained");
    let doc = get(addr, "/openapi.json");
    assert_eq!(doc.status, 200);
    assert!(doc.json()["paths"]["/v1/predict"]["post"].is_object());
    let missing = get(addr, "/nothing-here");
    assert_eq!((missing.status, missing.error_code().as_str()), (404, "not_found"));
    let wrong = get(addr, "/v1/predict");
    assert_eq!((wrong.status, wrong.error_code().as_str()), (405, "method_not_allowed"));
    assert!(health.header("x-request-id").is_some_and(|v| !v.is_empty()), "every answer carries a request id");

    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    let n = files.len() + 1; // one request per image, one multipart request
    for needle in [
        format!("masklab_http_requests_total{{route=\"/v1/predict\",status=\"200\"}} {n}"),
        format!("masklab_http_request_duration_seconds_count{{route=\"/v1/predict\"}} {}", n + 1), // and the 405
        "masklab_batch_size_bucket{le=\"1.0\"}".to_string(),
        format!("masklab_images_total {}", 2 * files.len()),
        "masklab_queue_depth 0".to_string(),
        "masklab_queue_capacity 256".to_string(),
        "masklab_images_per_second ".to_string(),
        "masklab_inference_seconds_count ".to_string(),
    ] {
        assert!(text.contains(&needle), "metrics lack `{needle}`:\n{text}");
    }
    // One structured log line per request.
    let log = server.log();
    assert!(log.contains("request") && log.contains("route=/v1/predict") && log.contains("status=200") && log.contains("latency_ms="), "{log}");
}

/// A PNG whose header claims `w` x `h` pixels, with a few bytes of image data: a decompression
/// bomb's shape, refused before any decoding.
fn forged_png(w: u32, h: u32) -> Vec<u8> {
    let mut real = png(&image::RgbImage::new(4, 4));
    // IHDR's width and height are bytes 16..24; its CRC (bytes 29..33) must be fixed too.
    real[16..20].copy_from_slice(&w.to_be_bytes());
    real[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&real[12..29]);
    real[29..33].copy_from_slice(&crc.to_be_bytes());
    real
}

fn crc32(bytes: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(bytes)
}

/// An image whose EXIF orientation says "rotate 90 degrees clockwise to show" (6), as phones store portraits.
fn png_with_orientation(img: &image::RgbImage, orientation: u8) -> Vec<u8> {
    use image::ImageEncoder;
    let exif = vec![b'I', b'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, orientation, 0, 0, 0, 0, 0, 0, 0];
    let mut bytes = Vec::new();
    let mut encoder = image::codecs::png::PngEncoder::new(&mut bytes);
    encoder.set_exif_metadata(exif).unwrap();
    encoder.write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8).unwrap();
    bytes
}

#[test]
fn grey_rgba_cmyk_16_bit_and_rotated_photos_are_read() {
    let (_, run) = trained();
    let server = Server::start(&[run], &[]);
    let addr = server.addr.as_str();
    let base = photo(60, 80, 3);
    let predict = |content_type: &str, bytes: &[u8]| -> serde_json::Value {
        let r = post_raw(addr, "/v1/predict", content_type, bytes).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["images"][0].clone()
    };
    let grey = jpeg(&image::DynamicImage::ImageLuma8(image::DynamicImage::ImageRgb8(base.clone()).to_luma8()), 90);
    let rgb_png = png(&base); // RGB, then the same pixels with an alpha channel:
    let mut rgba_bytes = Vec::new();
    image::DynamicImage::ImageRgba8(image::DynamicImage::ImageRgb8(base.clone()).to_rgba8())
        .write_to(&mut std::io::Cursor::new(&mut rgba_bytes), image::ImageFormat::Png)
        .unwrap();
    let mut deep = Vec::new();
    image::DynamicImage::ImageRgb16(image::DynamicImage::ImageRgb8(base.clone()).to_rgb16())
        .write_to(&mut std::io::Cursor::new(&mut deep), image::ImageFormat::Png)
        .unwrap();
    let cmyk = {
        let mut pixels = Vec::new();
        for p in base.pixels() {
            let [r, g, b] = p.0.map(|v| v as f32 / 255.0);
            let k = 1.0 - r.max(g).max(b);
            let c = |v: f32| if k >= 1.0 { 0 } else { ((1.0 - v - k) / (1.0 - k) * 255.0).round() as u8 };
            pixels.extend([c(r), c(g), c(b), (k * 255.0).round() as u8]);
        }
        let mut bytes = Vec::new();
        jpeg_encoder::Encoder::new(&mut bytes, 95).encode(&pixels, 60, 80, jpeg_encoder::ColorType::Cmyk).unwrap();
        bytes
    };
    assert_eq!(&cmyk[..2], b"\xff\xd8");
    let reference = probs_of(&predict("image/png", &rgb_png)["faces"][0]);
    for (what, ct, bytes, tolerance) in [
        ("RGBA", "image/png", &rgba_bytes, 1e-6),
        ("16-bit", "image/png", &deep, 1e-6),
        // Lossy: the colours are checked in data::decode's unit tests.
        ("CMYK JPEG", "image/jpeg", &cmyk, 1.0),
        ("grey JPEG", "image/jpeg", &grey, 1.0),
    ] {
        let img = predict(ct, bytes);
        assert_eq!((img["width"].as_u64(), img["height"].as_u64()), (Some(60), Some(80)), "{what}");
        let probs = probs_of(&img["faces"][0]);
        assert!(max_diff(&probs, &reference) <= tolerance, "{what}: {probs:?} vs {reference:?}");
    }

    // EXIF orientation: a landscape file tagged "rotate to show" is read standing up, exactly
    // as the same photo stored upright.
    let upright = photo(60, 80, 5);
    let stored_sideways = image::imageops::rotate270(&upright); // 80x60; orientation 6 turns it back
    let tagged = predict("image/png", &png_with_orientation(&stored_sideways, 6));
    let plain = predict("image/png", &png(&upright));
    assert_eq!((tagged["width"].as_u64(), tagged["height"].as_u64()), (Some(60), Some(80)));
    assert_eq!(tagged["faces"][0]["box"], serde_json::json!([0.0, 0.0, 60.0, 80.0]));
    assert!(max_diff(&probs_of(&tagged["faces"][0]), &probs_of(&plain["faces"][0])) < 1e-6);
}

#[test]
fn every_limit_is_answered_with_its_status_and_a_json_error() {
    let (_, run) = trained();
    let server = Server::start(
        &[run],
        &["--max-body", "200KiB", "--max-pixels", "100000", "--max-images", "3", "--timeout-ms", "1500", "--max-connections", "6"],
    );
    let addr = server.addr.as_str();
    let small = png(&photo(40, 50, 1));
    let expect = |r: Answer, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.error_code(), code);
    };

    // Body size: declared too large, and sent without a length (chunked) too large.
    let big = vec![7u8; 300 << 10];
    expect(post_raw(addr, "/v1/predict", "image/png", &big).unwrap(), 413, "body_too_large");
    let mut chunked = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..30 {
        chunked.extend_from_slice(format!("{:x}\r\n", 10 << 10).as_bytes());
        chunked.extend_from_slice(&[1u8; 10 << 10]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    expect(raw(addr, &chunked).unwrap(), 413, "body_too_large");
    // A client waiting for "100 Continue" gets its 413 without sending the body.
    let r = raw(addr, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n").unwrap();
    expect(r, 413, "body_too_large");

    // Pixels, from the header, before decoding: a forged 60000x60000 PNG and a real 400x400 one.
    let bomb = forged_png(60_000, 60_000);
    assert!(bomb.len() < 200);
    let r = post_raw(addr, "/v1/predict", "image/png", &bomb).unwrap();
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("60000x60000"), "{}", r.text());
    expect(r, 413, "too_many_pixels");
    expect(post_raw(addr, "/v1/predict", "image/png", &png(&photo(400, 400, 2))).unwrap(), 413, "too_many_pixels");

    // Not an image, and images that cannot be decoded.
    expect(post_raw(addr, "/v1/predict", "text/plain", b"hello, this is text").unwrap(), 415, "not_an_image");
    expect(post_raw(addr, "/v1/predict", "image/gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00").unwrap(), 415, "not_an_image");
    let photo_jpeg = jpeg(&image::DynamicImage::ImageRgb8(photo(40, 50, 3)), 90);
    expect(post_raw(addr, "/v1/predict", "image/jpeg", &photo_jpeg[..photo_jpeg.len() / 3]).unwrap(), 422, "undecodable");
    let mut broken_png = small.clone();
    let n = broken_png.len();
    broken_png[40..n - 20].iter_mut().for_each(|b| *b ^= 0x5a);
    expect(post_raw(addr, "/v1/predict", "image/png", &broken_png).unwrap(), 422, "undecodable");
    expect(post_raw(addr, "/v1/predict", "image/png", b"").unwrap(), 400, "empty_body");

    // Multipart: too many images, no file part, malformed; a bad part is named.
    let four: Vec<(&str, &str, &[u8])> = (0..4).map(|_| ("a.png", "image/png", small.as_slice())).collect();
    let (ct, body) = multipart(&four);
    expect(post_raw(addr, "/v1/predict", &ct, &body).unwrap(), 413, "too_many_images");
    let (ct, body) = multipart(&[("ok.png", "image/png", &small), ("notes.txt", "text/plain", b"just text")]);
    let r = post_raw(addr, "/v1/predict", &ct, &body).unwrap();
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("part 2 (notes.txt)"), "{}", r.text());
    expect(r, 415, "not_an_image");
    let form_only = b"--b\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhello\r\n--b--\r\n";
    expect(post_raw(addr, "/v1/predict", "multipart/form-data; boundary=b", form_only).unwrap(), 400, "no_image");
    expect(post_raw(addr, "/v1/predict", "multipart/form-data; boundary=b", b"--b\r\nbroken").unwrap(), 400, "bad_multipart");
    expect(post_raw(addr, "/v1/predict", "multipart/form-data", b"x").unwrap(), 400, "bad_multipart");

    // Per-request time limit: a body that stops arriving is answered 504 (the limit is 1.5 s).
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stalled.write_all(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n0123456789").unwrap();
    let start = Instant::now();
    let r = read_answer(&mut stalled).unwrap();
    let waited = start.elapsed();
    expect(r, 504, "timeout");
    assert!(waited >= Duration::from_millis(1200) && waited < Duration::from_secs(20), "{waited:?}");

    // Connections: six held open, the seventh is answered 503 and closed; once they close, it is served.
    std::thread::sleep(Duration::from_millis(300)); // the closed connections above give back their slots
    let held: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = get(addr, "/healthz");
    assert_eq!(r.header("retry-after"), Some("1"));
    expect(r, 503, "too_many_connections");
    drop(held);
    // The slots come back as the server notices the closed sockets; a poll that races that is
    // refused too, and counted, so the metrics below expect one refusal more per refused poll.
    let start = Instant::now();
    let mut connection_refusals = 1;
    loop {
        let r = get(addr, "/healthz");
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text());
        connection_refusals += 1;
        assert!(start.elapsed() < Duration::from_secs(10), "the connection slots were not released");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Requests hyper cannot parse are answered before any route sees them (400, 414, 431) and
    // still counted.
    let many_headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let unparsed = [
        ("GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n".to_string(), 400),
        (format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)), 414),
        (format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"), 431),
    ];
    for (request, status) in &unparsed {
        let mut raw = TcpStream::connect(addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        raw.write_all(request.as_bytes()).unwrap();
        assert_eq!(read_answer(&mut raw).unwrap().status, *status);
    }
    std::thread::sleep(Duration::from_millis(200)); // the connections' ends are counted after the answer

    // After all of that, a valid request is answered; the refusals are in the metrics.
    let r = post_raw(addr, "/v1/predict", "image/png", &small).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let text = get(addr, "/metrics").text();
    for (status, count) in [(413, 6), (415, 3), (422, 2), (400, 4), (504, 1)] {
        let line = format!("masklab_http_requests_total{{route=\"/v1/predict\",status=\"{status}\"}} {count}");
        assert!(text.contains(&line), "missing `{line}` in\n{text}");
    }
    let line = format!("masklab_http_requests_total{{route=\"connection_limit\",status=\"503\"}} {connection_refusals}");
    assert!(text.contains(&line), "missing `{line}` in\n{text}");
    for (_, status) in &unparsed {
        let line = format!("masklab_http_requests_total{{route=\"unparsed\",status=\"{status}\"}} 1");
        assert!(text.contains(&line), "missing `{line}` in\n{text}");
    }
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn a_burst_beyond_the_queue_gets_503s_and_every_accepted_request_its_own_answer() {
    let (_, run) = trained();
    let server = Server::start(&[run], &["--queue", "2", "--max-images", "2", "--max-batch", "2", "--max-wait-ms", "20", "--decode-threads", "1"]);
    let addr = server.addr.clone();
    // Distinct photos, large enough that decoding them takes a while, and their answers one at a time.
    let images: Vec<Vec<u8>> = (0..12).map(|i| png(&photo(400, 400, 100 + i))).collect();
    let alone: Vec<Vec<f64>> = images
        .iter()
        .map(|b| {
            let r = post_raw(&addr, "/v1/predict", "image/png", b).unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            probs_of(&r.json()["images"][0]["faces"][0])
        })
        .collect();
    let images = Arc::new(images);
    let mut refused = 0;
    for attempt in 0..3 {
        let clients = 48;
        let barrier = Arc::new(Barrier::new(clients));
        let threads: Vec<_> = (0..clients)
            .map(|k| {
                let (addr, images, barrier) = (addr.clone(), images.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let i = k % images.len();
                    barrier.wait();
                    (i, post_raw(&addr, "/v1/predict", "image/png", &images[i]))
                })
            })
            .collect();
        let mut ok = 0;
        for t in threads {
            let (i, answer) = t.join().unwrap();
            let r = answer.unwrap_or_else(|e| panic!("a request of the burst got no answer: {e}"));
            match r.status {
                200 => {
                    ok += 1;
                    let got = probs_of(&r.json()["images"][0]["faces"][0]);
                    assert!(max_diff(&got, &alone[i]) < 1e-5, "image {i}: batched {got:?} vs alone {:?}", alone[i]);
                }
                503 => {
                    assert_eq!(r.header("retry-after"), Some("1"));
                    assert_eq!(r.error_code(), "queue_full");
                    refused += 1;
                }
                other => panic!("unexpected status {other}: {}", r.text()),
            }
        }
        assert!(ok >= 1, "attempt {attempt}: nothing was accepted");
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "48 simultaneous requests never overfilled a queue of 2");
    eprintln!("burst: {refused} refused with 503");
    // The service is fine afterwards.
    let r = post_raw(&addr, "/v1/predict", "image/png", &images[0]).unwrap();
    assert_eq!(r.status, 200);
    let text = get(&addr, "/metrics").text();
    assert!(text.contains(&format!("masklab_http_requests_total{{route=\"/v1/predict\",status=\"503\"}} {refused}")), "{text}");
}

#[test]
fn hundreds_of_malformed_bodies_leave_the_service_answering() {
    let (_, run) = trained();
    let server = Server::start(&[run], &["--max-body", "1MiB"]);
    let addr = server.addr.as_str();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let good_png = png(&photo(48, 64, 9));
    let good_jpeg = jpeg(&image::DynamicImage::ImageRgb8(photo(48, 64, 10)), 85);
    let content_types = ["image/png", "image/jpeg", "application/octet-stream", "text/plain", "multipart/form-data; boundary=zz", "multipart/form-data", ""];
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for case in 0..300 {
        let body: Vec<u8> = match case % 6 {
            // Random bytes of random length.
            0 => (0..rng.gen_range(0..4000)).map(|_| rng.gen()).collect(),
            // A valid image cut anywhere.
            1 => {
                let src = if rng.gen() { &good_png } else { &good_jpeg };
                src[..rng.gen_range(0..src.len())].to_vec()
            }
            // A valid image with bytes flipped.
            2 => {
                let mut b = if rng.gen() { good_png.clone() } else { good_jpeg.clone() };
                for _ in 0..rng.gen_range(1..20) {
                    let i = rng.gen_range(0..b.len());
                    b[i] ^= rng.gen_range(1..=255u8);
                }
                b
            }
            // A valid signature followed by junk.
            3 => {
                let mut b = if rng.gen() { b"\x89PNG\r\n\x1a\n".to_vec() } else { b"\xff\xd8\xff\xe0".to_vec() };
                b.extend((0..rng.gen_range(0..3000)).map(|_| rng.gen::<u8>()));
                b
            }
            // Broken multipart bodies.
            4 => {
                let mut b = b"--zz\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.png\"\r\n\r\n".to_vec();
                b.extend_from_slice(&good_png[..rng.gen_range(0..good_png.len())]);
                if rng.gen() {
                    b.extend_from_slice(b"\r\n--zz--\r\n");
                }
                b
            }
            // A forged header with a random size.
            _ => forged_png(rng.gen_range(1..200_000), rng.gen_range(1..200_000)),
        };
        let ct = if case % 6 == 4 { "multipart/form-data; boundary=zz" } else { content_types[rng.gen_range(0..content_types.len())] };
        let r = post_raw(addr, "/v1/predict", ct, &body).unwrap_or_else(|e| panic!("case {case}: no answer: {e}\n{}", server.log()));
        if r.status != 200 {
            let code = r.error_code();
            assert!([400, 413, 415, 422].contains(&r.status), "case {case}: {} {code}", r.status);
        }
        *statuses.entry(r.status).or_default() += 1;
    }
    assert!(statuses.len() >= 3, "the cases reach several kinds of refusal: {statuses:?}");
    eprintln!("malformed bodies answered: {statuses:?}");
    let r = post_raw(addr, "/v1/predict", "image/png", &good_png).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(addr, "/readyz").status, 200);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn sigterm_finishes_the_requests_in_progress_and_exits_0() {
    let (_, run) = trained();
    let mut server = Server::start(&[run], &[]);
    let addr = server.addr.clone();
    let body = png(&photo(48, 64, 4));
    // A request in progress: headers and half of the body sent before the signal.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    slow.write_all(format!("POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes()).unwrap();
    let half = body.len() / 2;
    slow.write_all(&body[..half]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.terminate();
    // New connections are refused once it stops accepting.
    let start = Instant::now();
    while TcpStream::connect(&addr).is_ok() {
        assert!(start.elapsed() < Duration::from_secs(10), "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    slow.write_all(&body[half..]).unwrap();
    let r = read_answer(&mut slow).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["images"][0]["faces"].as_array().unwrap().len(), 1);
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}\n{}", server.log());
    let log = server.log();
    assert!(log.contains("shutting down") && log.contains("stopped"), "{log}");
}

#[test]
fn a_run_that_cannot_be_loaded_is_an_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = masklab(&["serve", dir.path().join("nope").to_str().unwrap(), "--addr", "127.0.0.1:0", "--device", "cpu"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    let (_, run) = trained();
    let out = masklab(&["serve", run.to_str().unwrap(), "--addr", "127.0.0.1:0", "--max-images", "9", "--queue", "4"]);
    assert!(!out.status.success() && stderr(&out).contains("--max-images"), "{}", stderr(&out));
}

/// With MTCNN's weights the service answers per face by default; a photo in which it finds no
/// face is answered whole, with exactly `predict`'s input for the same file (a JPEG decoded at the
/// DCT scale the model needs), so its probabilities are predict's.
#[test]
fn a_photo_without_a_face_is_answered_whole_as_predict_reads_it() {
    let (dir, run) = trained();
    let out_dir = dir.join("no-face");
    std::fs::create_dir_all(&out_dir).unwrap();
    let weights = out_dir.join("mtcnn");
    let o = masklab(&["weights", "fetch", "mtcnn", "--dir", weights.to_str().unwrap(), "--wheel", common::faces::facenet_wheel().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A smooth JPEG with no face in it, larger than the model's input (it decodes at a DCT scale).
    let eval = out_dir.join("eval");
    std::fs::create_dir_all(eval.join("images")).unwrap();
    let img = image::RgbImage::from_fn(256, 320, |x, y| image::Rgb([(x / 2) as u8, (y * 3 / 4) as u8, ((x + y) / 3) as u8]));
    img.save(eval.join("images/wall.jpg")).unwrap();
    std::fs::write(eval.join("info.csv"), "ImageID,ans\nwall.jpg,0\n").unwrap();
    let (sub, probs) = (out_dir.join("sub.csv"), out_dir.join("probs.csv"));
    let o = masklab(&["predict", run.to_str().unwrap(), eval.to_str().unwrap(), "--out", sub.to_str().unwrap(), "--probs", probs.to_str().unwrap(), "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = &read_probs(&probs)[0].1;

    let server = Server::start(&[run], &["--face-weights", weights.to_str().unwrap()]);
    let r = post_raw(&server.addr, "/v1/predict", "image/jpeg", &std::fs::read(eval.join("images/wall.jpg")).unwrap()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let face = &r.json()["images"][0]["faces"][0];
    assert_eq!(face["whole_image"], true, "{face}");
    let got = probs_of(face);
    assert!(max_diff(&got, want) < 1e-5, "service {got:?} vs predict {want:?}");
}
