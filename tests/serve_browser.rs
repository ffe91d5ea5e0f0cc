//! The `masklab serve` page in a real browser: Debian's chromium, headless, driven by
//! playwright-core (`tests/browser/serve_page.mjs`; `scripts/setup.sh --test` installs both).
//! A generated photo goes through the page's file input on a desktop-sized and a phone-sized
//! window and the page must show the label the API gives for it; a file that is not an image
//! must show the server's error; a dropped and a pasted photo must be classified too; the webcam
//! view must classify chromium's fake camera.
mod common;
use common::serve::{post_raw, Server};
use common::{demo, stderr, train_tiny};
use masklab::demo::{write_demo, DemoOptions};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn the_page_shows_the_label_the_api_gives() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let driver = root.join("tests/browser/node_modules/playwright-core");
    assert!(Path::new(CHROMIUM).is_file(), "{CHROMIUM} is missing: the browser test needs Debian's chromium (scripts/setup.sh --test installs it)");
    assert!(driver.is_dir(), "{} is missing: scripts/setup.sh --test installs it (npm ci in tests/browser)", driver.display());

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve_browser");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    demo(&data, 8, 5);
    let run = dir.join("run");
    let out = train_tiny(&data, &run, &["train.epochs=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A photo as a user would drop it: the demo's drawn face at a phone-photo-like size.
    let photos = dir.join("photos");
    write_demo(&photos, &DemoOptions { train_people: 6, eval_people: 1, width: 360, height: 480, seed: 3 }).unwrap();
    let photo = std::fs::read_dir(photos.join("eval/images")).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_file()).unwrap();
    let bad = dir.join("not-a-photo.png");
    std::fs::write(&bad, b"this is text, not a PNG").unwrap();

    let server = Server::start(&[&run], &[]);
    let api = post_raw(&server.addr, "/v1/predict", "image/jpeg", &std::fs::read(&photo).unwrap()).unwrap();
    assert_eq!(api.status, 200, "{}", api.text());
    let want = api.json()["images"][0]["faces"][0]["label"].as_str().unwrap().to_string();

    let shots = dir.join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut node = Command::new("node")
        .arg(root.join("tests/browser/serve_page.mjs"))
        .args([&server.url("/"), photo.to_str().unwrap(), bad.to_str().unwrap(), shots.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (scripts/setup.sh --test needs nodejs)");
    let start = Instant::now();
    while node.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(240) {
            let _ = node.kill();
            panic!("the browser did not finish within 4 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = node.wait_with_output().unwrap();
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser script failed:\n{stdout}\n{err}\nserver:\n{}", server.log());
    let shown: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));

    for window in ["desktop", "phone"] {
        let w = &shown[window];
        assert_eq!(w["label"].as_str(), Some(want.as_str()), "{window}: the page shows the API's label: {w}");
        assert_eq!(w["bars"].as_u64(), Some(8), "{window}: mask 3 + gender 2 + age 3 bars: {w}");
        assert_eq!(w["drawn"], true, "{window}: the photo is drawn: {w}");
        assert_eq!(w["problems"], serde_json::json!([]), "{window}: no script errors, no external requests");
    }
    for how in ["droppedLabel", "pastedLabel"] {
        assert_eq!(shown["phone"][how].as_str(), Some(want.as_str()), "{how}: a dropped or pasted photo is classified too");
    }
    assert_eq!(shown["desktop"]["failed"], serde_json::json!(["415 /v1/predict"]), "only the file that is not an image is refused");
    assert_eq!(shown["phone"]["failed"], serde_json::json!([]));
    assert!(shown["phone"]["scrollWidth"].as_u64().unwrap() <= 390, "the page fits a phone's width: {}", shown["phone"]);
    let error = shown["desktop"]["error"].as_str().unwrap();
    assert!(error.contains("not-a-photo.png") && error.contains("not a JPEG or PNG"), "the page shows the server's error: {error}");
    let labels: Vec<String> = masklab::labels::Class::all().map(|c| c.label(&Default::default())).collect();
    let webcam = shown["desktop"]["webcamLabel"].as_str().unwrap();
    assert!(labels.iter().any(|l| l == webcam), "the webcam view shows a class label: {webcam}");
    assert_eq!(shown["desktop"]["webcamButton"], "Stop the webcam");
    for shot in ["desktop.png", "phone.png", "desktop-error.png", "desktop-webcam.png"] {
        let meta = std::fs::metadata(shots.join(shot)).unwrap_or_else(|_| panic!("no screenshot {shot}"));
        assert!(meta.len() > 5000, "{shot} is {} bytes", meta.len());
    }
    eprintln!("screenshots in {}", shots.display());
    let text = common::serve::get(&server.addr, "/metrics").text();
    assert!(text.contains("masklab_http_requests_total{route=\"/\",status=\"200\"} 2"), "{text}");
}
