//! The shape of the code, checked: no import cycle among the source files, the trainer knows
//! none of its observers, and only the run-folder module spells the run folder's file names.
//! Imports are read from the source text (`crate::a::b`, `super::x`, `masklab::...` in main.rs),
//! each resolved to the file that defines the named module.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every source file of the library and binary, by its module path (`train::trainer`), with the
/// code before its unit tests.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.split("\n#[cfg(test)]").next().unwrap();
            // Comment lines are prose: a doc link (`[`super::raw`]`) is no import.
            let code: String = code.lines().filter(|l| !l.trim_start().starts_with("//")).flat_map(|l| [l, "\n"]).collect();
            (parts.join("::"), code)
        })
        .collect()
}

/// The files a file imports: for each `crate::a::b::c` (or `super::`, or `masklab::` in the
/// binary), the longest prefix that names a file other than itself. Grouped imports
/// (`crate::a::{b, c::d}`) count each of their paths.
fn imports(module: &str, code: &str, files: &BTreeSet<String>) -> BTreeSet<String> {
    // `super` of `a::b` is `a`, also for a folder's mod.rs (module `a` -> the crate root).
    let mut parent: Vec<String> = module.split("::").map(str::to_string).collect();
    parent.pop();
    let mut paths: Vec<Vec<String>> = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("masklab::", Vec::new()), ("super::", parent)] {
        if prefix == "masklab::" && module != "main" {
            continue;
        }
        let mut at = 0;
        while let Some(i) = code[at..].find(prefix) {
            let start = at + i;
            at = start + prefix.len();
            let before = code[..start].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            expand(&base, &code[at..], &mut paths);
        }
    }
    let mut out = BTreeSet::new();
    for mut segments in paths {
        while !segments.is_empty() {
            let candidate = segments.join("::");
            if files.contains(&candidate) {
                if candidate != module {
                    out.insert(candidate);
                }
                break;
            }
            segments.pop();
        }
    }
    out
}

/// The paths written at the start of `text` (after a `crate::`), below `base`.
fn expand(base: &[String], text: &str, out: &mut Vec<Vec<String>>) {
    let path: String = text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
    let mut segments = base.to_vec();
    segments.extend(path.split("::").filter(|s| !s.is_empty()).map(str::to_string));
    let rest = &text[path.len()..];
    if path.ends_with("::") && rest.starts_with('{') {
        // The group's items, split at top-level commas.
        let (mut depth, mut item_start) = (0, 1);
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' | ',' if depth == 1 => {
                    expand(&segments, rest[item_start..i].trim_start(), out);
                    item_start = i + 1;
                    if c == '}' {
                        return;
                    }
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        return;
    }
    out.push(segments);
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let files: BTreeSet<String> = sources.keys().cloned().collect();
    sources.iter().map(|(m, code)| (m.clone(), imports(m, code, &files))).collect()
}

#[test]
fn no_source_file_imports_itself_through_others() {
    let g = graph();
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(n: &str, g: &BTreeMap<String, BTreeSet<String>>, state: &mut BTreeMap<String, u8>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if !state.contains_key(n.as_str()) {
            if let Some(cycle) = visit(n, &g, &mut state, &mut Vec::new()) {
                panic!("import cycle: {}", cycle.join(" -> "));
            }
        }
    }
    // The check sees real imports: the trainer's are known.
    assert!(g["train::trainer"].contains("train::optim") && g["train::trainer"].contains("run_dir"), "{:?}", g["train::trainer"]);
}

#[test]
fn the_trainer_knows_none_of_its_observers() {
    let g = graph();
    for m in ["train::trainer", "train::kfold"] {
        for import in &g[m] {
            for observer in ["report", "tracking", "console", "main"] {
                assert!(import != observer && !import.starts_with(&format!("{observer}::")), "{m} imports {import}");
            }
        }
    }
}

#[test]
fn only_the_run_folder_module_spells_the_run_files() {
    let names = [
        "config.toml", "metrics.jsonl", "best.json", "last.json", "best.safetensors", "last.safetensors", "val_predictions.csv",
        "oof_predictions.csv", "cv.json", "folds.json", "tune.json", "pretrained.json", "mlflow.json", "report.html", "audit.json",
        "face_heads.safetensors",
    ];
    for (module, code) in sources() {
        if module == "run_dir" || module.starts_with("run_dir::") {
            continue;
        }
        for name in names {
            assert!(!code.contains(&format!("\"{name}\"")), "{module} spells \"{name}\": the run folder's names belong to run_dir");
        }
    }
}

/// The top-level module of a module path (`train::trainer` -> `train`).
fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// Each top-level module's layer (its index in `masklab::LAYERS`, bottom first).
fn layer_of() -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for (i, layer) in masklab::LAYERS.iter().enumerate() {
        for m in *layer {
            assert!(out.insert(*m, i).is_none(), "`{m}` is listed in two layers of masklab::LAYERS");
        }
    }
    out
}

/// Every import that runs up the layers (`file -> import`), and every pair of top-level modules
/// that import each other, directly or through others (a circle of folders).
fn layering_faults(g: &BTreeMap<String, BTreeSet<String>>, layers: &BTreeMap<&str, usize>) -> Vec<String> {
    let mut faults = Vec::new();
    // The binary (main.rs) stands above everything.
    let level = |m: &str| if m == "main" { usize::MAX } else { layers.get(top(m)).copied().unwrap_or(usize::MAX) };
    let mut folders: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, imports) in g {
        for to in imports {
            if level(to) > level(from) {
                faults.push(format!("{from} imports {to}, which stands in a higher layer"));
            }
            if top(from) != top(to) {
                folders.entry(top(from)).or_default().insert(top(to));
            }
        }
    }
    // A circle among top-level modules: any module that reaches itself.
    for &start in folders.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&str> = folders[start].iter().copied().collect();
        while let Some(m) = todo.pop() {
            if m == start {
                faults.push(format!("the top-level module `{start}` imports itself through others"));
                break;
            }
            if seen.insert(m) {
                todo.extend(folders.get(m).into_iter().flatten().copied());
            }
        }
    }
    faults
}

#[test]
fn every_module_stands_in_one_layer_and_imports_only_its_own_or_lower_ones() {
    let layers = layer_of();
    let sources = sources();
    let tops: BTreeSet<&str> = sources.keys().map(|m| top(m)).filter(|m| *m != "main" && *m != "lib").collect();
    let listed: BTreeSet<&str> = layers.keys().copied().collect();
    assert_eq!(tops, listed, "masklab::LAYERS must list every top-level module of src/ once (left: the modules, right: the list)");
    let faults = layering_faults(&graph(), &layers);
    assert!(faults.is_empty(), "the layers do not hold:\n  {}", faults.join("\n  "));
}

#[test]
fn a_planted_upward_import_and_a_circle_of_folders_are_found() {
    // The same check on a made-up graph: the checker itself must see what it is meant to.
    let layers: BTreeMap<&str, usize> = [("util", 0), ("data", 1), ("model", 2), ("train", 3), ("evaluate", 3)].into_iter().collect();
    let edges = |pairs: &[(&str, &str)]| -> BTreeMap<String, BTreeSet<String>> {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    let good = edges(&[("train::trainer", "model::net"), ("model::net", "data::loader"), ("train::trainer", "evaluate")]);
    assert!(layering_faults(&good, &layers).is_empty());
    let upward = edges(&[("data::loader", "model::net")]);
    let faults = layering_faults(&upward, &layers);
    assert!(faults.iter().any(|f| f.contains("data::loader imports model::net")), "{faults:?}");
    let circle = edges(&[("train::trainer", "evaluate"), ("evaluate", "train::loss")]);
    let faults = layering_faults(&circle, &layers);
    assert!(faults.iter().any(|f| f.contains("`train` imports itself")), "{faults:?}");
}

#[test]
fn readme_shows_the_layers_as_declared() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let shown: String = masklab::LAYERS.iter().rev().map(|l| format!("    {}\n", l.join("  "))).collect();
    assert!(readme.contains(&shown), "README.md must show the layers, top first, as masklab::LAYERS declares them:\n{shown}");
}
