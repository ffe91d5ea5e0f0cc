//! Config sections as the modules that own them read them. The config layer (`config.rs`)
//! parses, checks and resolves the whole TOML; every other module reads only its own sections
//! (`[data]`, `[train]`, ...) out of a resolved table, through the key its section type
//! declares, so no module below the config sees the whole `Config`.
use anyhow::{anyhow, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A section of the config: its key in config.toml (`data`, `train`, ...), its defaults and
/// its (de)serialised form.
pub trait Section: Serialize + DeserializeOwned + Default {
    const KEY: &'static str;
}

/// Section `T` of a resolved config table; its defaults where the table has no such section.
/// A wrong value is an error naming its key (`train.epochs`).
pub fn read<T: Section>(config: &toml::Table) -> Result<T> {
    match config.get(T::KEY) {
        None => Ok(T::default()),
        Some(value) => deserialize(value.clone(), T::KEY),
    }
}

/// Deserialises `value`; an error names the key (`prefix` + the path inside the value).
pub fn deserialize<T: DeserializeOwned>(value: toml::Value, prefix: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." { prefix.to_string() } else { format!("{prefix}.{path}") };
        anyhow!("config key `{key}`: {}", e.inner().message())
    })
}

/// A section as a TOML value, for writing it into a table.
pub fn to_value<T: Section>(section: &T) -> Result<toml::Value> {
    Ok(toml::Value::try_from(section)?)
}

/// Lays `over` onto `base`: tables merge key by key, any other value replaces.
pub fn overlay(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => overlay(a, b),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Every leaf of a table as `section.key` -> its value written as TOML.
pub fn flat_values(table: &toml::Table) -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
        match value {
            toml::Value::Table(table) => {
                for (k, v) in table {
                    walk(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", &toml::Value::Table(table.clone()), &mut out);
    out
}

/// The keys (`section.key = mine vs theirs`) on which two config tables differ, leaving out
/// those named in `ignore`.
pub fn differences(mine: &toml::Table, theirs: &toml::Table, ignore: &[&str]) -> Vec<String> {
    let (mine, theirs) = (flat_values(mine), flat_values(theirs));
    let keys: BTreeSet<&String> = mine.keys().chain(theirs.keys()).collect();
    let missing = "(unset)".to_string();
    keys.into_iter()
        .filter(|k| !ignore.contains(&k.as_str()))
        .filter_map(|k| {
            let (a, b) = (mine.get(k).unwrap_or(&missing), theirs.get(k).unwrap_or(&missing));
            (a != b).then(|| format!("{k} = {a} vs {b}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Example {
        size: u32,
        name: String,
    }

    impl Section for Example {
        const KEY: &'static str = "example";
    }

    #[test]
    fn a_section_is_read_by_its_key_with_defaults_and_named_errors() {
        let table: toml::Table = "[example]\nsize = 3\n".parse().unwrap();
        assert_eq!(read::<Example>(&table).unwrap(), Example { size: 3, name: String::new() });
        assert_eq!(read::<Example>(&toml::Table::new()).unwrap(), Example::default());
        let bad: toml::Table = "[example]\nsize = \"x\"\n".parse().unwrap();
        let err = read::<Example>(&bad).unwrap_err().to_string();
        assert!(err.contains("`example.size`"), "{err}");
    }

    #[test]
    fn overlay_merges_tables_and_differences_name_keys() {
        let mut base: toml::Table = "[a]\nx = 1\ny = 2\n".parse().unwrap();
        let over: toml::Table = "[a]\ny = 3\n[b]\nz = 4\n".parse().unwrap();
        overlay(&mut base, &over);
        assert_eq!(base.to_string(), "[a]\nx = 1\ny = 3\n\n[b]\nz = 4\n");
        let other: toml::Table = "[a]\nx = 1\ny = 2\n".parse().unwrap();
        let diff = differences(&base, &other, &["b.z"]);
        assert_eq!(diff, vec!["a.y = 3 vs 2".to_string()]);
    }
}
