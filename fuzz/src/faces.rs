//! `masklab::faces`: face boxes and the faces.csv reader (paths are relative to this file's folder).
#[path = "../../src/faces/boxes.rs"]
pub mod boxes;
#[path = "../../src/faces/cache.rs"]
pub mod cache;
