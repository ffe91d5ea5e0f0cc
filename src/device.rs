//! Where a model runs: `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`, as the config
//! (`train.device`) and every command's `--device` write it.
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Where a model runs (`train.device`, `--device`): "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    /// A CUDA device by index (`cuda` = `cuda:0`).
    Cuda(usize),
}

impl DeviceChoice {
    /// The device to run on; CUDA asked for on a machine without it is an error.
    pub fn resolve(self) -> Result<tch::Device> {
        match self {
            DeviceChoice::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda(index) => {
                if !tch::Cuda::is_available() {
                    bail!("device {self} asked for, but CUDA is not available (masklab --version tells what libtorch sees)");
                }
                Ok(tch::Device::Cuda(index))
            }
        }
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<DeviceChoice, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("device must be auto, cpu, cuda or cuda:N, got `{s}`")),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `--device`, as every command that runs a model takes it.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct DeviceArg {
    /// auto, cpu, cuda, cuda:N.
    #[arg(long = "device", default_value = "auto")]
    pub device: DeviceChoice,
}
