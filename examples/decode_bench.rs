//! What decoding at the size needed saves (data::decode): per photo, the full decode then crop +
//! resize (`decode_upright` + `resize_region`, what every caller did before DCT scaling)
//! against `decode_region_bytes` (libjpeg-turbo at 1/2, 1/4 or 1/8 when the crop allows), on
//! one thread, files already in memory. The two alternate round by round; each line gives the
//! median and the quartiles of the rounds' microseconds per photo.
//!
//!     cargo run --release --example decode_bench -- DIR [SIZE ...] [--crop 0.9896] [--rounds 15] [--limit 200]
//!
//! DIR: a folder of JPEGs (searched recursively), e.g. a stand-in made by make_maskset.py.
use masklab::data::decode::{decode_region_bytes, decode_upright, resize_region, Crop, Preprocess};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn jpegs(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        if path.is_dir() {
            jpegs(&path, out)?;
        } else if !name.starts_with("._") && (name.ends_with(".jpg") || name.ends_with(".jpeg")) {
            out.push(path);
        }
    }
    Ok(())
}

fn quartiles(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(|a, b| a.total_cmp(b));
    [v[v.len() / 4], v[v.len() / 2], v[v.len() * 3 / 4]]
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!("usage: decode_bench DIR [SIZE ...] [--crop C] [--rounds N] [--limit N]"))?);
    let (mut sizes, mut crop, mut rounds, mut limit) = (Vec::new(), Crop::Fraction(380.0 / 384.0), 15usize, 200usize);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{arg} needs a value"));
        match arg.as_str() {
            "--crop" => crop = value()?.parse().map_err(anyhow::Error::msg)?,
            "--rounds" => rounds = value()?.parse()?,
            "--limit" => limit = value()?.parse()?,
            size => sizes.push(size.parse::<u32>().map_err(|_| anyhow::anyhow!("not a size: {size}"))?),
        }
    }
    if sizes.is_empty() {
        sizes = vec![96, 128];
    }
    let mut paths = Vec::new();
    jpegs(&dir, &mut paths)?;
    paths.sort();
    paths.truncate(limit);
    anyhow::ensure!(!paths.is_empty(), "no JPEG under {}", dir.display());
    let files: Vec<Vec<u8>> = paths.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    println!("{} JPEGs from {}, crop {crop}, {rounds} rounds, one thread", files.len(), dir.display());
    for size in sizes {
        let prep = Preprocess { crop, width: size, height: size };
        let full = |bytes: &[u8]| resize_region(&decode_upright(bytes).map_err(anyhow::Error::msg)?, None, &prep).map_err(anyhow::Error::msg);
        let scaled = |bytes: &[u8]| decode_region_bytes(bytes, None, &prep).map_err(anyhow::Error::msg);
        let (mut full_us, mut scaled_us) = (Vec::new(), Vec::new());
        for round in 0..rounds + 1 {
            // Alternate which goes first, so that neither always meets a warm or a busy machine.
            let order: [bool; 2] = if round % 2 == 0 { [false, true] } else { [true, false] };
            for use_scaled in order {
                let start = Instant::now();
                for bytes in &files {
                    let out = if use_scaled { scaled(bytes)? } else { full(bytes)? };
                    std::hint::black_box(out);
                }
                let us = start.elapsed().as_secs_f64() * 1e6 / files.len() as f64;
                // Round 0 warms the caches and the allocator.
                if round > 0 {
                    if use_scaled { scaled_us.push(us) } else { full_us.push(us) }
                }
            }
        }
        let [f1, f2, f3] = quartiles(full_us);
        let [s1, s2, s3] = quartiles(scaled_us);
        println!("{size:>4} px  full decode + resize {f2:7.0} us (IQR {f1:.0}-{f3:.0})  scaled {s2:7.0} us (IQR {s1:.0}-{s3:.0})  x{:.2}", f2 / s2);
    }
    Ok(())
}
