//! Person-level splits on a generated dataset: no person's photos on both sides.
mod common;
use masklab::data::dataset::{read_train, ReadOptions};
use masklab::data::split::{kfold_assign, train_val_split};
use masklab::labels::AgeBounds;
use std::collections::{HashMap, HashSet};

#[test]
fn no_person_crosses_the_split_or_the_folds() {
    let dir = tempfile::tempdir().unwrap();
    common::demo(dir.path(), 30, 11);
    let set = read_train(dir.path(), &ReadOptions::default()).unwrap();
    // Duplicated and suffixed ids stay distinct people: the folder is the person.
    assert_eq!(set.people.len(), 30);
    assert!(set.people.iter().any(|p| p.id.ends_with("-1")));
    let ids: HashSet<_> = set.people.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), 29, "one id is shared by two folders");

    let bounds = AgeBounds::default();
    let strata = set.strata(&bounds);
    let samples = set.samples(&bounds);
    let is_val = train_val_split(&strata, 0.2, 5);
    let mut side_of_folder: HashMap<String, bool> = HashMap::new();
    for s in &samples {
        let folder = s.path.parent().unwrap().to_string_lossy().into_owned();
        let side = is_val[s.person];
        assert_eq!(*side_of_folder.entry(folder).or_insert(side), side, "a person on both sides");
    }
    assert_eq!(is_val.iter().filter(|v| **v).count(), 6);

    let folds = kfold_assign(&strata, 5, 5);
    let mut fold_of_folder: HashMap<String, usize> = HashMap::new();
    for s in &samples {
        let folder = s.path.parent().unwrap().to_string_lossy().into_owned();
        let f = folds[s.person];
        assert_eq!(*fold_of_folder.entry(folder).or_insert(f), f, "a person in two folds");
    }
    let used: HashSet<_> = folds.iter().collect();
    assert_eq!(used.len(), 5);
}
