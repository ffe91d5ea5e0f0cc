//! Which face box a photo is cropped to. A photo's own detection comes first (its largest
//! face). A training person's masked photo without one (masks hide the lower face, where
//! MTCNN looks for a mouth) takes the box found on that person's unmasked photo, padded by
//! [`REUSE_PAD`] on every side, because the competition's photos of one person are taken in
//! one sitting; anything still without a box is left to the caller's fallback (the centre crop).
use crate::faces::boxes::{pad_box, primary_face, BoxF};
use crate::faces::cache::{FacesCache, ImageFaces};
use crate::data::dataset::TrainSet;
use crate::labels::Mask;
use serde::Serialize;

/// How far a reused box grows on every side, as a share of its width and height: the head
/// moves a little between the photos of a sitting.
pub const REUSE_PAD: f32 = 0.1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FaceSource {
    /// The photo's own largest face.
    Detected,
    /// The box of the person's unmasked photo, padded.
    ReusedFromNormal,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FaceBox {
    pub bbox: BoxF,
    pub source: FaceSource,
    /// The face's landmarks (detected faces only).
    pub landmarks: Option<[[f32; 2]; 5]>,
}

/// A photo's own face box: its largest detected face.
pub fn detected_box(entry: Option<&ImageFaces>) -> Option<FaceBox> {
    let f = primary_face(&entry?.faces)?;
    Some(FaceBox { bbox: f.bbox, source: FaceSource::Detected, landmarks: Some(f.landmarks) })
}

/// The box of every training photo, per person and in the order of `Person::images`; None
/// where neither the photo nor its person's unmasked photo has a face (or the photo is not in
/// the cache). The unmasked photo is the one labelled `NotWear` after the relabel list, the
/// `normal` file first.
pub fn train_face_boxes(set: &TrainSet, cache: &FacesCache) -> Vec<Vec<Option<FaceBox>>> {
    set.people
        .iter()
        .map(|person| {
            let entries: Vec<Option<&ImageFaces>> = person.images.iter().map(|img| cache.get(&img.path)).collect();
            let mut unmasked: Vec<usize> = (0..person.images.len()).filter(|&i| person.images[i].mask == Mask::NotWear).collect();
            unmasked.sort_by_key(|&i| person.images[i].stem != "normal");
            let reference = unmasked.iter().find_map(|&i| Some((entries[i]?, detected_box(entries[i])?)));
            person
                .images
                .iter()
                .zip(&entries)
                .map(|(img, entry)| {
                    if let Some(b) = detected_box(*entry) {
                        return Some(b);
                    }
                    let (entry, (ref_entry, ref_box)) = ((*entry)?, reference?);
                    if img.mask == Mask::NotWear {
                        return None;
                    }
                    // Same sitting, maybe another resolution: carry the box over in relative terms.
                    let (sx, sy) = (entry.width as f32 / ref_entry.width as f32, entry.height as f32 / ref_entry.height as f32);
                    let b = ref_box.bbox;
                    let scaled = [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy];
                    Some(FaceBox { bbox: pad_box(&scaled, REUSE_PAD, entry.width, entry.height), source: FaceSource::ReusedFromNormal, landmarks: None })
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::{ImageEntry, Person};
    use crate::faces::boxes::Face;
    use crate::faces::cache::Stamp;
    use crate::labels::{Gender, STEMS};
    use std::path::{Path, PathBuf};

    fn face(b: BoxF) -> Face {
        Face { bbox: b, score: 0.99, landmarks: [[0.0; 2]; 5] }
    }

    #[test]
    fn masked_photos_without_a_face_take_the_padded_box_of_the_normal_photo() {
        let root = Path::new("/d/train");
        let person = |folder: &str| Person {
            id: folder.into(),
            gender: Gender::Female,
            race: "Asian".into(),
            age: 30,
            folder: folder.into(),
            line: 2,
            images: STEMS
                .iter()
                .map(|s| ImageEntry { path: root.join("images").join(folder).join(format!("{s}.jpg")), stem: s.to_string(), mask: Mask::from_stem(s).unwrap() })
                .collect(),
        };
        let set = TrainSet { root: PathBuf::from("/d"), people: vec![person("a"), person("b")], skipped_files: vec![], relabel_file: None, relabeled: 0, problems: vec![] };
        let mut cache = FacesCache::empty(&root.join("faces.csv"));
        let stamp = Stamp { bytes: 1, modified_ns: 1 };
        let put = |cache: &mut FacesCache, key: &str, w: u32, faces: Vec<Face>| {
            cache.images.insert(key.into(), ImageFaces { stamp, width: w, height: w, min_face: 20.0, faces });
        };
        // Person a: mask1 has its own two faces (the larger wins), mask2 none (reuse), mask3 is
        // twice the resolution (scaled reuse), normal found; mask4 not in the cache.
        put(&mut cache, "images/a/mask1.jpg", 100, vec![face([0.0, 0.0, 10.0, 10.0]), face([20.0, 20.0, 60.0, 60.0])]);
        put(&mut cache, "images/a/mask2.jpg", 100, vec![]);
        put(&mut cache, "images/a/mask3.jpg", 200, vec![]);
        put(&mut cache, "images/a/normal.jpg", 100, vec![face([30.0, 20.0, 70.0, 80.0])]);
        // Person b: nothing on the normal photo, so nothing to reuse.
        put(&mut cache, "images/b/mask1.jpg", 100, vec![]);
        put(&mut cache, "images/b/normal.jpg", 100, vec![]);
        let boxes = train_face_boxes(&set, &cache);
        let a = &boxes[0];
        assert_eq!(a[0].unwrap().bbox, [20.0, 20.0, 60.0, 60.0]);
        assert_eq!(a[0].unwrap().source, FaceSource::Detected);
        assert_eq!(a[1].unwrap(), FaceBox { bbox: [26.0, 14.0, 74.0, 86.0], source: FaceSource::ReusedFromNormal, landmarks: None });
        assert_eq!(a[2].unwrap().bbox, [52.0, 28.0, 148.0, 172.0]);
        assert_eq!(a[3], None);
        assert_eq!(a[6].unwrap().source, FaceSource::Detected);
        assert!(boxes[1].iter().all(Option::is_none));

        // After a relabel swap, the incorrect_mask file is the unmasked photo.
        let mut swapped = set.clone();
        for img in &mut swapped.people[1].images {
            img.mask = match img.mask {
                Mask::NotWear => Mask::Incorrect,
                Mask::Incorrect => Mask::NotWear,
                m => m,
            };
        }
        put(&mut cache, "images/b/incorrect_mask.jpg", 100, vec![face([10.0, 10.0, 50.0, 50.0])]);
        let boxes = train_face_boxes(&swapped, &cache);
        assert_eq!(boxes[1][0].unwrap().source, FaceSource::ReusedFromNormal);
        assert_eq!(boxes[1][6].unwrap().bbox, [6.0, 6.0, 54.0, 54.0]);
    }
}
