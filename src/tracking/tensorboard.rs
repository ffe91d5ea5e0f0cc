//! TensorBoard event files: scalars and PNG images as `tensorboard.Event` protobufs in TFRecord
//! framing, appended to `events.out.tfevents.<secs>.masklab.<pid>` in a run's log folder.
//!
//! A resumed run keeps the log consistent the way metrics.jsonl is kept: events of steps after
//! the checkpoint (written by the attempt that died) are removed from the older files, then a
//! new file continues from the checkpoint's step, so every reader sees each step once.
use super::tfrecord::{read_records, write_record};
use crate::util::write_atomic;
use anyhow::{Context, Result};
use prost::Message;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The subset of TensorBoard's `event.proto` and `summary.proto` that masklab writes; field
/// numbers are the wire format and must match those files.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        #[prost(double, tag = "1")]
        pub wall_time: f64,
        #[prost(int64, tag = "2")]
        pub step: i64,
        #[prost(oneof = "What", tags = "3, 5")]
        pub what: Option<What>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        /// "brain.Event:2": tells readers which purge rules apply to the file.
        #[prost(string, tag = "3")]
        FileVersion(String),
        #[prost(message, tag = "5")]
        Summary(Summary),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        #[prost(message, repeated, tag = "1")]
        pub value: Vec<Value>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        #[prost(string, tag = "1")]
        pub tag: String,
        /// Which plugin shows the value (text summaries name "text").
        #[prost(message, optional, tag = "9")]
        pub metadata: Option<SummaryMetadata>,
        #[prost(oneof = "Data", tags = "2, 4, 8")]
        pub data: Option<Data>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Data {
        #[prost(float, tag = "2")]
        SimpleValue(f32),
        #[prost(message, tag = "4")]
        Image(Image),
        #[prost(message, tag = "8")]
        Tensor(TensorProto),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SummaryMetadata {
        #[prost(message, optional, tag = "1")]
        pub plugin_data: Option<PluginData>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginData {
        #[prost(string, tag = "1")]
        pub plugin_name: String,
        #[prost(bytes = "vec", tag = "2")]
        pub content: Vec<u8>,
    }

    /// `tensor.proto`'s TensorProto, as far as a string tensor needs it (a scalar: no shape).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        /// `types.proto`'s DataType: DT_STRING = 7.
        #[prost(int32, tag = "1")]
        pub dtype: i32,
        #[prost(bytes = "vec", repeated, tag = "8")]
        pub string_val: Vec<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Image {
        #[prost(int32, tag = "1")]
        pub height: i32,
        #[prost(int32, tag = "2")]
        pub width: i32,
        /// 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
        #[prost(int32, tag = "3")]
        pub colorspace: i32,
        #[prost(bytes = "vec", tag = "4")]
        pub encoded_image_string: Vec<u8>,
    }
}

use proto::{Data, Event, Image, PluginData, Summary, SummaryMetadata, TensorProto, Value, What};

const FILE_MARK: &str = "tfevents";

/// Appends events to one new event file in `dir`.
pub struct EventWriter {
    file: File,
    path: PathBuf,
}

impl EventWriter {
    /// Opens a new event file in `dir`. With `resume_after`, first drops every event of a later
    /// step from the files already there.
    pub fn create(dir: &Path, resume_after: Option<i64>) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        if let Some(step) = resume_after {
            for path in event_files(dir)? {
                drop_events_after(&path, step)?;
            }
        }
        let path = dir.join(new_file_name(dir)?);
        let file = File::options().create_new(true).append(true).open(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut writer = EventWriter { file, path };
        writer.write(Event { wall_time: now(), step: 0, what: Some(What::FileVersion("brain.Event:2".into())) })?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One event holding every `(tag, value)` at `step` (TensorBoard stores scalars as f32).
    pub fn scalars(&mut self, step: i64, values: &[(String, f64)]) -> Result<()> {
        let value = values.iter().map(|(tag, v)| Value { tag: tag.clone(), metadata: None, data: Some(Data::SimpleValue(*v as f32)) }).collect();
        self.write(Event { wall_time: now(), step, what: Some(What::Summary(Summary { value })) })
    }

    /// An RGB PNG image summary.
    pub fn image(&mut self, step: i64, tag: &str, png: &[u8], width: u32, height: u32) -> Result<()> {
        let image = Image { height: height as i32, width: width as i32, colorspace: 3, encoded_image_string: png.to_vec() };
        let value = vec![Value { tag: tag.to_string(), metadata: None, data: Some(Data::Image(image)) }];
        self.write(Event { wall_time: now(), step, what: Some(What::Summary(Summary { value })) })
    }

    /// A text summary (Markdown, shown by TensorBoard's text plugin) at `step`.
    pub fn text(&mut self, step: i64, tag: &str, markdown: &str) -> Result<()> {
        const DT_STRING: i32 = 7;
        let metadata = SummaryMetadata { plugin_data: Some(PluginData { plugin_name: "text".into(), content: Vec::new() }) };
        let tensor = TensorProto { dtype: DT_STRING, string_val: vec![markdown.as_bytes().to_vec()] };
        let value = vec![Value { tag: tag.to_string(), metadata: Some(metadata), data: Some(Data::Tensor(tensor)) }];
        self.write(Event { wall_time: now(), step, what: Some(What::Summary(Summary { value })) })
    }

    fn write(&mut self, event: Event) -> Result<()> {
        // One write per record and no user-space buffer: TensorBoard sees each event as it lands.
        write_record(&mut self.file, &event.encode_to_vec()).with_context(|| format!("cannot write {}", self.path.display()))
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(FILE_MARK) && !n.starts_with('.')))
        .collect();
    files.sort();
    Ok(files)
}

/// `events.out.tfevents.<secs>.masklab.<pid>`, with `secs` past every file already in `dir`:
/// TensorBoard reads a folder's files in name order, so a resumed run's file must sort last.
fn new_file_name(dir: &Path) -> Result<String> {
    let newest = event_files(dir)?
        .iter()
        .filter_map(|p| p.file_name()?.to_str()?.split('.').nth(3)?.parse::<u64>().ok())
        .max();
    let secs = now() as u64;
    let secs = newest.map_or(secs, |n| secs.max(n + 1));
    Ok(format!("events.out.{FILE_MARK}.{secs:010}.masklab.{}", std::process::id()))
}

/// Rewrites an event file without the events of steps after `step` and without a torn tail.
fn drop_events_after(path: &Path, step: i64) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (records, clean) = read_records(&bytes);
    let kept: Vec<&[u8]> = records
        .iter()
        .copied()
        .filter(|r| Event::decode(*r).map_or(true, |e| e.step <= step))
        .collect();
    if clean && kept.len() == records.len() {
        return Ok(());
    }
    let mut out = Vec::with_capacity(bytes.len());
    for r in kept {
        write_record(&mut out, r)?;
    }
    write_atomic(path, &out)
}

/// What an event file holds, for tests and checks: `(step, tag, value)` scalars and
/// `(step, tag, png)` images, in file order.
#[derive(Debug, Default)]
pub struct EventLog {
    pub scalars: Vec<(i64, String, f32)>,
    pub images: Vec<(i64, String, Vec<u8>)>,
    /// `(step, tag, text)` text summaries.
    pub texts: Vec<(i64, String, String)>,
}

/// Reads every event file of `dir` in the order TensorBoard does.
pub fn read_dir(dir: &Path) -> Result<EventLog> {
    let mut log = EventLog::default();
    for path in event_files(dir)? {
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        for record in read_records(&bytes).0 {
            let event = Event::decode(record).with_context(|| format!("{}: not an event", path.display()))?;
            let Some(What::Summary(summary)) = event.what else { continue };
            for value in summary.value {
                match value.data {
                    Some(Data::SimpleValue(v)) => log.scalars.push((event.step, value.tag, v)),
                    Some(Data::Image(image)) => log.images.push((event.step, value.tag, image.encoded_image_string)),
                    Some(Data::Tensor(t)) => log.texts.extend(t.string_val.iter().map(|v| (event.step, value.tag.clone(), String::from_utf8_lossy(v).into_owned()))),
                    None => {}
                }
            }
        }
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(log: &EventLog, tag: &str) -> Vec<i64> {
        log.scalars.iter().filter(|(_, t, _)| t == tag).map(|(s, _, _)| *s).collect()
    }

    #[test]
    fn a_resumed_log_holds_each_step_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = EventWriter::create(dir.path(), None).unwrap();
        for step in 1..=6 {
            first.scalars(step, &[("train/loss".into(), 1.0 / step as f64)]).unwrap();
        }
        first.image(4, "val/confusion", b"png bytes", 2, 1).unwrap();
        let first_path = first.path().to_path_buf();
        drop(first);
        // A torn record at the end, as a kill mid-write leaves it.
        let mut bytes = std::fs::read(&first_path).unwrap();
        bytes.extend_from_slice(&[7, 0, 0, 0, 0]);
        std::fs::write(&first_path, bytes).unwrap();

        // The checkpoint was at step 4: steps 5 and 6 are redone with other values.
        let mut second = EventWriter::create(dir.path(), Some(4)).unwrap();
        assert!(second.path() > first_path.as_path(), "the new file must sort after the old one");
        for step in 5..=7 {
            second.scalars(step, &[("train/loss".into(), 10.0 * step as f64)]).unwrap();
        }
        drop(second);
        let log = read_dir(dir.path()).unwrap();
        assert_eq!(steps(&log, "train/loss"), (1..=7).collect::<Vec<_>>());
        let at5 = log.scalars.iter().find(|(s, _, _)| *s == 5).unwrap().2;
        assert_eq!(at5, 50.0);
        assert_eq!(log.images, vec![(4, "val/confusion".to_string(), b"png bytes".to_vec())]);
    }
}
