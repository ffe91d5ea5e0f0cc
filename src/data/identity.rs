//! The identity of a dataset as a k-fold run records it (`run_dir::DatasetIdentity`): who is in
//! it, with which labels (after relabelling), and which image files, so that a fold job started
//! on other data, or on the same folder after its people or labels changed, is refused instead
//! of mixing two datasets into one cross-validation.
use crate::data::dataset::{read_train, TrainSet};
use crate::data::prepared::PrepareSettings;
use crate::run_dir::DatasetIdentity;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Reads the training set as `cfg` says (relabel list, skipped rows) and returns its identity.
pub fn dataset_identity(data: &Path, cfg: &PrepareSettings) -> Result<DatasetIdentity> {
    let set = read_train(data, &cfg.data.read_options())?;
    identity_of(&set, data)
}

/// The digest of `set`'s canonical listing: people by folder, each person's images by path,
/// every path relative to `data`. Image sizes stand in for their contents (reading 30,000
/// photos to check a fold job would cost minutes; a replaced photo almost never keeps its size).
pub fn identity_of(set: &TrainSet, data: &Path) -> Result<DatasetIdentity> {
    let mut people: Vec<_> = set.people.iter().collect();
    people.sort_by(|a, b| a.folder.cmp(&b.folder));
    let mut hasher = Sha256::new();
    let mut images = 0;
    for p in &people {
        hasher.update(format!("person\t{}\t{:?}\t{}\t{}\n", p.id, p.gender, p.age, p.folder));
        let mut entries: Vec<_> = p.images.iter().collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        for img in entries {
            let size = std::fs::metadata(&img.path).with_context(|| format!("cannot read {}", img.path.display()))?.len();
            let relative = img.path.strip_prefix(data).unwrap_or(&img.path);
            hasher.update(format!("image\t{}\t{:?}\t{size}\n", relative.display(), img.mask));
            images += 1;
        }
    }
    let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(DatasetIdentity { digest, people: people.len(), images, folder: data.display().to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::ReadOptions;
    use crate::demo::{write_demo, DemoOptions};

    fn demo(dir: &Path, seed: u64) {
        write_demo(dir, &DemoOptions { train_people: 6, eval_people: 2, width: 16, height: 20, seed }).unwrap();
    }

    fn identity(dir: &Path) -> DatasetIdentity {
        identity_of(&read_train(dir, &ReadOptions::default()).unwrap(), dir).unwrap()
    }

    #[test]
    fn the_same_data_elsewhere_is_the_same_and_any_change_is_not() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        demo(a.path(), 1);
        demo(b.path(), 1);
        let first = identity(a.path());
        assert_eq!(first.people, 6);
        assert_eq!(first.images, 42);
        assert_eq!(first.digest, identity(b.path()).digest, "the same data in another folder");

        // Another label for one person, by a relabel list.
        let set = read_train(b.path(), &ReadOptions::default()).unwrap();
        let relabel = b.path().join("train/relabel.csv");
        let list = std::fs::read_to_string(&relabel).unwrap();
        std::fs::write(&relabel, format!("{}\n{},age,77\n", list.trim_end(), set.people[1].folder)).unwrap();
        assert_ne!(first.digest, identity(b.path()).digest, "a changed label");
        std::fs::write(&relabel, list).unwrap();
        assert_eq!(first.digest, identity(b.path()).digest);

        // One photo replaced by another of a different size.
        let set = read_train(b.path(), &ReadOptions::default()).unwrap();
        let photo = set.people[2].images[0].path.clone();
        let mut bytes = std::fs::read(&photo).unwrap();
        bytes.extend_from_slice(&[0; 16]);
        std::fs::write(&photo, bytes).unwrap();
        assert_ne!(first.digest, identity(b.path()).digest, "a replaced photo");

        // Other people altogether.
        let c = tempfile::tempdir().unwrap();
        demo(c.path(), 2);
        assert_ne!(first.digest, identity(c.path()).digest);
    }
}
