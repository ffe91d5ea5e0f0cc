//! Task layouts: how one or more models cover the 18-way task. Every layout yields the same
//! 18-way class probabilities, so metrics, reports and ensembles never care which was trained.
//!
//! - `single`: one model, one 18-way head.
//! - `multi`: one model whose classifier has 8 outputs: mask (3) | gender (2) | age (3).
//! - `two`: a mask+gender model (6-way, `mask*2 + gender`) and an age model (3-way).
//! - `three`: a mask model, a gender model and an age model.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use tch::{Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Single,
    Multi,
    Two,
    Three,
}

/// What a head predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Class18,
    MaskGender,
    Mask,
    Gender,
    Age,
}

impl Task {
    pub fn classes(self) -> i64 {
        match self {
            Task::Class18 => 18,
            Task::MaskGender => 6,
            Task::Mask | Task::Age => 3,
            Task::Gender => 2,
        }
    }

    /// This head's target from 18-way class indices (int64 tensor of any shape).
    pub fn target(self, class18: &Tensor) -> Tensor {
        match self {
            Task::Class18 => class18.shallow_clone(),
            Task::MaskGender => class18.divide_scalar_mode(6, "floor") * 2 + class18.divide_scalar_mode(3, "floor").remainder(2),
            Task::Mask => class18.divide_scalar_mode(6, "floor"),
            Task::Gender => class18.divide_scalar_mode(3, "floor").remainder(2),
            Task::Age => class18.remainder(3),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Task::Class18 => "class18",
            Task::MaskGender => "mask_gender",
            Task::Mask => "mask",
            Task::Gender => "gender",
            Task::Age => "age",
        }
    }
}

/// One head: a slice `[offset, offset + task.classes())` of model `model`'s output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Head {
    pub model: usize,
    pub offset: i64,
    pub task: Task,
}

impl Head {
    /// This head's logits from the outputs of all the layout's models.
    pub fn logits(&self, outputs: &[Tensor]) -> Tensor {
        self.slice(&outputs[self.model])
    }

    /// This head's logits from its own model's output.
    pub fn slice(&self, output: &Tensor) -> Tensor {
        output.narrow(1, self.offset, self.task.classes())
    }
}

impl Layout {
    /// The models of this layout: (name, number of outputs). Names key per-model settings
    /// (`models.<name>.*` in the config) and checkpoint files.
    pub fn models(self) -> Vec<(&'static str, i64)> {
        match self {
            Layout::Single => vec![("class18", 18)],
            Layout::Multi => vec![("multi", 8)],
            Layout::Two => vec![("mask_gender", 6), ("age", 3)],
            Layout::Three => vec![("mask", 3), ("gender", 2), ("age", 3)],
        }
    }

    pub fn heads(self) -> Vec<Head> {
        let h = |model, offset, task| Head { model, offset, task };
        match self {
            Layout::Single => vec![h(0, 0, Task::Class18)],
            Layout::Multi => vec![h(0, 0, Task::Mask), h(0, 3, Task::Gender), h(0, 5, Task::Age)],
            Layout::Two => vec![h(0, 0, Task::MaskGender), h(1, 0, Task::Age)],
            Layout::Three => vec![h(0, 0, Task::Mask), h(1, 0, Task::Gender), h(2, 0, Task::Age)],
        }
    }

    /// 18-way class probabilities `[N, 18]` (float32) from the models' raw outputs.
    /// Factored layouts multiply independent task probabilities: p(m,g,a) = p(m) p(g) p(a).
    pub fn probs18(self, outputs: &[Tensor]) -> Tensor {
        let soft = |head: &Head| head.logits(outputs).to_kind(Kind::Float).softmax(-1, Kind::Float);
        let heads = self.heads();
        match self {
            Layout::Single => soft(&heads[0]),
            Layout::Two => {
                let mg = soft(&heads[0]); // [N, 6] = mask*2 + gender
                let age = soft(&heads[1]); // [N, 3]
                (mg.unsqueeze(2) * age.unsqueeze(1)).flatten(1, 2)
            }
            Layout::Multi | Layout::Three => {
                let (m, g, a) = (soft(&heads[0]), soft(&heads[1]), soft(&heads[2]));
                let mg = (m.unsqueeze(2) * g.unsqueeze(1)).flatten(1, 2);
                (mg.unsqueeze(2) * a.unsqueeze(1)).flatten(1, 2)
            }
        }
    }
}

impl FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Layout, String> {
        match s.to_ascii_lowercase().as_str() {
            "single" => Ok(Layout::Single),
            "multi" => Ok(Layout::Multi),
            "two" => Ok(Layout::Two),
            "three" => Ok(Layout::Three),
            _ => Err(format!("unknown layout `{s}` (expected single, multi, two or three)")),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Single => "single",
            Layout::Multi => "multi",
            Layout::Two => "two",
            Layout::Three => "three",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_targets_decode_the_class() {
        let c = Tensor::from_slice(&[0i64, 4, 11, 13, 17]);
        let v = |t: Tensor| Vec::<i64>::try_from(t).unwrap();
        assert_eq!(v(Task::Mask.target(&c)), vec![0, 0, 1, 2, 2]);
        assert_eq!(v(Task::Gender.target(&c)), vec![0, 1, 1, 0, 1]);
        assert_eq!(v(Task::Age.target(&c)), vec![0, 1, 2, 1, 2]);
        assert_eq!(v(Task::MaskGender.target(&c)), vec![0, 1, 3, 4, 5]);
    }

    #[test]
    fn every_layout_gives_normalised_18_way_probabilities_in_class_order() {
        for layout in [Layout::Single, Layout::Multi, Layout::Two, Layout::Three] {
            let outputs: Vec<Tensor> =
                layout.models().iter().map(|(_, n)| Tensor::randn([4, *n], (Kind::Float, tch::Device::Cpu))).collect();
            let p = layout.probs18(&outputs);
            assert_eq!(p.size(), vec![4, 18], "{layout}");
            let sums = Vec::<f32>::try_from(p.sum_dim_intlist(1, false, Kind::Float)).unwrap();
            assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{layout}: {sums:?}");
        }
        // Hand-checked: a confident factored prediction lands on the encoded class.
        // mask=Incorrect(1), gender=Female(1), age=Old(2) -> 1*6 + 1*3 + 2 = 11.
        let big = 30.0;
        let multi = Tensor::from_slice(&[0.0f32, big, 0.0, 0.0, big, 0.0, 0.0, big]).view([1, 8]);
        assert_eq!(Layout::Multi.probs18(&[multi]).argmax(1, false).int64_value(&[0]), 11);
        let mg = Tensor::from_slice(&[0.0f32, 0.0, 0.0, big, 0.0, 0.0]).view([1, 6]); // mask 1, gender 1
        let age = Tensor::from_slice(&[0.0f32, 0.0, big]).view([1, 3]);
        assert_eq!(Layout::Two.probs18(&[mg, age]).argmax(1, false).int64_value(&[0]), 11);
    }
}
