//! Config errors name the key and where its value came from; `data.crop` takes a TOML number.
use masklab::config::Config;
use masklab::image::decode::Crop;

fn error(file: Option<&std::path::Path>, overrides: &[&str]) -> String {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    format!("{:#}", Config::load(file, &overrides).unwrap_err())
}

#[test]
fn a_value_of_the_wrong_type_names_its_key_and_source() {
    let err = error(None, &["train.epochs=abc"]);
    assert!(err.contains("train.epochs") && err.contains("command line") && err.contains("train.epochs=abc"), "{err}");
    // A bare key names the key it means.
    let err = error(None, &["epochs=abc"]);
    assert!(err.contains("train.epochs") && err.contains("epochs=abc"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.toml");
    std::fs::write(&file, "[train]\nepochs = 3\n\n[optim]\nlr = \"fast\"\n").unwrap();
    let err = error(Some(&file), &[]);
    assert!(err.contains("optim.lr") && err.contains("mine.toml"), "{err}");
    // A command-line value that replaces the file's is blamed on the command line.
    let err = error(Some(&file), &["optim.lr=[1]"]);
    assert!(err.contains("optim.lr") && err.contains("command line"), "{err}");
    // Inside an array, and per model of a layout.
    let err = error(None, &["data.age_bounds=[30,\"x\"]"]);
    assert!(err.contains("data.age_bounds"), "{err}");
    let err = error(None, &["model.layout=two", "models.age.optim.lr=\"x\""]);
    assert!(err.contains("models.age.optim.lr"), "{err}");
}

#[test]
fn crop_takes_numbers_and_text() {
    let load = |o: &[&str]| Config::load(None, &o.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap().data.preprocess().unwrap().crop;
    assert_eq!(load(&["data.crop=0.9"]), Crop::Fraction(0.9));
    assert_eq!(load(&["data.crop=1.0"]), Crop::Fraction(1.0));
    assert_eq!(load(&["data.crop=380"]), Crop::Pixels { width: 380, height: 380 });
    assert_eq!(load(&["data.crop=\"380x400\""]), Crop::Pixels { width: 380, height: 400 });
    assert_eq!(load(&["data.crop=none"]), Crop::None);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[data]\ncrop = 0.95\n").unwrap();
    assert_eq!(Config::load(Some(&file), &[]).unwrap().data.preprocess().unwrap().crop, Crop::Fraction(0.95));
    // Out of range stays an error naming the key; the resolved config writes the text back.
    assert!(error(None, &["data.crop=1.5"]).contains("data.crop"));
    let c = Config::load(Some(&file), &[]).unwrap();
    let again: toml::Table = c.to_toml().unwrap().parse().unwrap();
    assert_eq!(again["data"]["crop"].as_str(), Some("0.95"));
    let err = error(None, &["data.crop=[1]"]);
    assert!(err.contains("data.crop") && err.contains("a crop"), "{err}");
}

/// Every dotted key of the defaults.
fn keys() -> Vec<String> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in t {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(sub) if !sub.is_empty() => walk(&key, sub, out),
                _ => out.push(key),
            }
        }
    }
    let table: toml::Table = Config::default().to_toml().unwrap().parse().unwrap();
    let mut out = Vec::new();
    walk("", &table, &mut out);
    out
}

/// A property test of the config reader (the fuzzing of the TOML config: Config needs libtorch's
/// types, which the libFuzzer build leaves out): random values for random keys, and randomly
/// damaged preset files, never panic; whatever loads writes itself back to an equal config.
#[test]
fn random_settings_never_panic_and_what_loads_round_trips() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let keys = keys();
    let values = [
        "0", "1", "-1", "2", "7", "1e308", "-0.0", "nan", "inf", "-inf", "18446744073709551616", "0.5", "1.5", "0.0001",
        "\"\"", "\"abc\"", "\"none\"", "\"380x\"", "\"0x0\"", "\"cosine\"", "\"resnet18\"", "true", "false", "[]", "[1,2,3]",
        "[30,20]", "[0,0]", "{a=1}", "{2=800}", "\"two\"", "\"three\"", "\"fp16\"", "\"loss\"", "x=y", "[[1]]",
    ];
    let dir = tempfile::tempdir().unwrap();
    let resolved = dir.path().join("resolved.toml");
    for _ in 0..600 {
        let n = rng.gen_range(1..4);
        let overrides: Vec<String> = (0..n)
            .map(|_| {
                let key = if rng.gen_bool(0.1) { "models.age.optim.lr".to_string() } else { keys[rng.gen_range(0..keys.len())].clone() };
                format!("{key}={}", values[rng.gen_range(0..values.len())])
            })
            .collect();
        let loaded = std::panic::catch_unwind(|| Config::load(None, &overrides));
        let Ok(result) = loaded else { panic!("Config::load panicked on {overrides:?}") };
        if let Ok(cfg) = result {
            std::fs::write(&resolved, cfg.to_toml().unwrap()).unwrap();
            let again = Config::load(Some(&resolved), &[]).unwrap_or_else(|e| panic!("{overrides:?}: resolved config fails: {e:#}"));
            assert_eq!(again, cfg, "{overrides:?}");
        }
    }
    // Damaged presets: bytes overwritten, lines dropped or repeated.
    let presets: Vec<String> = ["default", "cpu-quick", "cpu-real-photos", "reference-two-b3"]
        .iter()
        .map(|p| std::fs::read_to_string(format!("{}/configs/{p}.toml", env!("CARGO_MANIFEST_DIR"))).unwrap())
        .collect();
    let file = dir.path().join("damaged.toml");
    for _ in 0..300 {
        let mut lines: Vec<String> = presets[rng.gen_range(0..presets.len())].lines().map(str::to_string).collect();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..lines.len());
            match rng.gen_range(0..3) {
                0 => {
                    lines.remove(i);
                }
                1 => {
                    let copy = lines[i].clone();
                    lines.insert(i, copy);
                }
                _ => {
                    let mut bytes = lines[i].clone().into_bytes();
                    if !bytes.is_empty() {
                        let j = rng.gen_range(0..bytes.len());
                        bytes[j] = b" =.\"[]0x-9#"[rng.gen_range(0..11)];
                    }
                    lines[i] = String::from_utf8_lossy(&bytes).into_owned();
                }
            }
        }
        std::fs::write(&file, lines.join("\n")).unwrap();
        let loaded = std::panic::catch_unwind(|| Config::load(Some(&file), &[]));
        assert!(loaded.is_ok(), "Config::load panicked on:\n{}", lines.join("\n"));
    }
}

#[test]
fn non_finite_numbers_are_refused_naming_the_key() {
    for (setting, key) in [("augment.erasing=nan", "augment.erasing"), ("optim.lr=inf", "optim.lr"), ("models.age.optim.lr=-inf", "models.age.optim.lr")] {
        let mut o = vec![setting];
        if setting.starts_with("models.") {
            o.insert(0, "model.layout=two");
        }
        let err = error(None, &o);
        assert!(err.contains(key) && err.contains("finite"), "{err}");
    }
}
