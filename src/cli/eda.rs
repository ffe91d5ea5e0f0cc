//! `masklab eda`.
use super::read_args::ReadArgs;
use crate::data::dataset::read_train;
use crate::labels::AgeBounds;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct EdaArgs {
    /// Dataset folder holding train/ (and optionally eval/).
    data: PathBuf,
    /// Also write PNG charts and eda.json into this folder (new, empty, or holding an earlier
    /// eda's output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write into --out even when it holds other files.
    #[arg(long, requires = "out")]
    force: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Age band bounds: where Middle and Old start.
    #[arg(long, default_value = "30,60", value_parser = parse_bounds)]
    age_bounds: AgeBounds,
    #[command(flatten)]
    read: ReadArgs,
}

fn parse_bounds(s: &str) -> Result<AgeBounds, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    match parts.as_slice() {
        [m, o] => AgeBounds::new(m.parse().map_err(|_| format!("bad age `{m}`"))?, o.parse().map_err(|_| format!("bad age `{o}`"))?),
        _ => Err("expected MIDDLE,OLD such as 30,60".into()),
    }
}

pub fn run(a: EdaArgs) -> Result<()> {
    if let Some(dir) = &a.out {
        crate::util::out_folder::claim_folder(dir, "eda", a.force, |name| crate::eda::CHART_FILES.contains(&name))?;
    }
    let set = read_train(&a.data, &(&a.read).into())?;
    let report = crate::eda::analyse(&set, &a.age_bounds, a.read.skip_bad)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", crate::eda::render_text(&report));
    }
    if let Some(dir) = a.out {
        for f in crate::eda::write_charts(&report, &dir)? {
            eprintln!("wrote {}", f.display());
        }
    }
    Ok(())
}
