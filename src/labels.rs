//! The label types of the mask task and the 18-way class: `class = mask*6 + gender*3 + age`.
//! Every other module speaks these types.
use serde::{Deserialize, Serialize};
use std::fmt;

pub const NUM_CLASSES: usize = 18;

/// Class probabilities below this count as this wherever their logarithm is taken (the decision
/// biases, the face heads' fusion): log 0 would make a class unreachable whatever is added to it.
pub const MIN_PROB: f64 = 1e-7;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mask {
    Wear,
    Incorrect,
    NotWear,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Gender {
    Male,
    Female,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AgeBand {
    Young,
    Middle,
    Old,
}

impl Mask {
    pub const ALL: [Mask; 3] = [Mask::Wear, Mask::Incorrect, Mask::NotWear];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Option<Mask> {
        Self::ALL.get(i).copied()
    }

    /// The mask state an image file stem stands for: `mask1..mask5`, `incorrect_mask`, `normal`.
    pub fn from_stem(stem: &str) -> Option<Mask> {
        match stem.to_ascii_lowercase().as_str() {
            "mask1" | "mask2" | "mask3" | "mask4" | "mask5" => Some(Mask::Wear),
            "incorrect_mask" => Some(Mask::Incorrect),
            "normal" => Some(Mask::NotWear),
            _ => None,
        }
    }

    /// Parses a state name as written in relabel files (`wear`, `incorrect`, `normal`/`notwear`).
    pub fn parse(word: &str) -> Option<Mask> {
        match word.trim().to_ascii_lowercase().replace(['-', '_', ' '], "").as_str() {
            "wear" | "mask" | "worn" => Some(Mask::Wear),
            "incorrect" | "incorrectmask" => Some(Mask::Incorrect),
            "notwear" | "normal" | "nomask" => Some(Mask::NotWear),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mask::Wear => "Wear",
            Mask::Incorrect => "Incorrect",
            Mask::NotWear => "NotWear",
        }
    }
}

/// The seven image stems of one person, in the competition's order.
pub const STEMS: [&str; 7] = ["mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal"];

impl Gender {
    pub const ALL: [Gender; 2] = [Gender::Male, Gender::Female];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Option<Gender> {
        Self::ALL.get(i).copied()
    }

    pub fn parse(word: &str) -> Option<Gender> {
        match word.trim().to_ascii_lowercase().as_str() {
            "male" | "m" => Some(Gender::Male),
            "female" | "f" => Some(Gender::Female),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Gender::Male => "Male",
            Gender::Female => "Female",
        }
    }

    /// The word the competition writes in train.csv and folder names.
    pub fn word(self) -> &'static str {
        match self {
            Gender::Male => "male",
            Gender::Female => "female",
        }
    }
}

impl AgeBand {
    pub const ALL: [AgeBand; 3] = [AgeBand::Young, AgeBand::Middle, AgeBand::Old];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Option<AgeBand> {
        Self::ALL.get(i).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            AgeBand::Young => "Young",
            AgeBand::Middle => "Middle",
            AgeBand::Old => "Old",
        }
    }
}

/// Where the age bands start: `Young` below `middle`, `Old` from `old` on.
/// The competition's default is `[30, 60]`; strong teams moved the old boundary to 59.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgeBounds {
    pub middle: u32,
    pub old: u32,
}

impl Default for AgeBounds {
    fn default() -> Self {
        AgeBounds { middle: 30, old: 60 }
    }
}

impl AgeBounds {
    pub fn new(middle: u32, old: u32) -> Result<AgeBounds, String> {
        if middle == 0 || old <= middle {
            return Err(format!("age bounds must satisfy 0 < middle < old, got [{middle}, {old}]"));
        }
        Ok(AgeBounds { middle, old })
    }

    pub fn band(&self, age: u32) -> AgeBand {
        if age < self.middle {
            AgeBand::Young
        } else if age < self.old {
            AgeBand::Middle
        } else {
            AgeBand::Old
        }
    }

    /// Labels such as `<30`, `30-59`, `>=60`.
    pub fn band_label(&self, band: AgeBand) -> String {
        match band {
            AgeBand::Young => format!("<{}", self.middle),
            AgeBand::Middle => format!("{}-{}", self.middle, self.old - 1),
            AgeBand::Old => format!(">={}", self.old),
        }
    }
}

/// One of the 18 classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Class {
    pub mask: Mask,
    pub gender: Gender,
    pub age: AgeBand,
}

impl Class {
    pub fn new(mask: Mask, gender: Gender, age: AgeBand) -> Class {
        Class { mask, gender, age }
    }

    pub fn encode(self) -> usize {
        self.mask.index() * 6 + self.gender.index() * 3 + self.age.index()
    }

    pub fn decode(class: usize) -> Option<Class> {
        if class >= NUM_CLASSES {
            return None;
        }
        Some(Class {
            mask: Mask::from_index(class / 6)?,
            gender: Gender::from_index((class / 3) % 2)?,
            age: AgeBand::from_index(class % 3)?,
        })
    }

    pub fn all() -> impl Iterator<Item = Class> {
        (0..NUM_CLASSES).map(|c| Class::decode(c).expect("class index in range"))
    }

    /// A short name for plots and tables: `Wear/Male/<30`.
    pub fn label(self, bounds: &AgeBounds) -> String {
        format!("{}/{}/{}", self.mask.name(), self.gender.name(), bounds.band_label(self.age))
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip_covers_all_classes() {
        for c in 0..NUM_CLASSES {
            let class = Class::decode(c).unwrap();
            assert_eq!(class.encode(), c);
        }
        assert!(Class::decode(18).is_none());
        let c = Class::new(Mask::Incorrect, Gender::Female, AgeBand::Old);
        assert_eq!(c.encode(), 6 + 3 + 2);
        let c = Class::new(Mask::NotWear, Gender::Male, AgeBand::Middle);
        assert_eq!(c.encode(), 12 + 1);
    }

    #[test]
    fn stems_map_to_mask_states() {
        for s in &STEMS[..5] {
            assert_eq!(Mask::from_stem(s), Some(Mask::Wear));
        }
        assert_eq!(Mask::from_stem("incorrect_mask"), Some(Mask::Incorrect));
        assert_eq!(Mask::from_stem("normal"), Some(Mask::NotWear));
        assert_eq!(Mask::from_stem("mask6"), None);
        assert_eq!(Mask::from_stem("._mask1"), None);
    }

    #[test]
    fn age_bounds_default_and_moved() {
        let b = AgeBounds::default();
        assert_eq!(b.band(29), AgeBand::Young);
        assert_eq!(b.band(30), AgeBand::Middle);
        assert_eq!(b.band(59), AgeBand::Middle);
        assert_eq!(b.band(60), AgeBand::Old);
        let moved = AgeBounds::new(30, 59).unwrap();
        assert_eq!(moved.band(58), AgeBand::Middle);
        assert_eq!(moved.band(59), AgeBand::Old);
        assert_eq!(moved.band_label(AgeBand::Middle), "30-58");
        assert!(AgeBounds::new(60, 30).is_err());
    }

    #[test]
    fn class_labels_read_well() {
        let b = AgeBounds::default();
        assert_eq!(Class::decode(0).unwrap().label(&b), "Wear/Male/<30");
        assert_eq!(Class::decode(17).unwrap().label(&b), "NotWear/Female/>=60");
    }
}
