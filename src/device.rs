//! Where to train, by name: the CPU (burn's Flex backend, the default) or a GPU through one of
//! burn's CubeCL backends, each compiled in by the cargo feature of the same name.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{QatError, Result};

/// A kind of burn device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Accelerator {
    /// burn's pure-Rust CPU backend (`Device::flex()`), with this crate's own CPU kernels.
    #[default]
    Cpu,
    /// wgpu: Vulkan, Metal, DX12 or WebGPU, whichever the platform has (feature `wgpu`).
    Wgpu,
    /// CUDA (feature `cuda`).
    Cuda,
    /// ROCm / HIP (feature `rocm`).
    Rocm,
}

impl Accelerator {
    pub const ALL: [Self; 4] = [Self::Cpu, Self::Wgpu, Self::Cuda, Self::Rocm];

    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
            Self::Rocm => "rocm",
        }
    }

    /// Whether this build can run on it.
    pub fn compiled_in(self) -> bool {
        match self {
            Self::Cpu => true,
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cuda => cfg!(feature = "cuda"),
            Self::Rocm => cfg!(feature = "rocm"),
        }
    }

    /// Device number `index` of this kind (0 for the first; the CPU has only one). wgpu picks
    /// its best adapter for device 0 (override with `CUBECL_WGPU_DEFAULT_DEVICE`, e.g. `Cpu`
    /// for a software Vulkan device) and the `index`-th discrete GPU after that.
    pub fn device(self, index: usize) -> Result<Device> {
        if !self.compiled_in() {
            return Err(QatError::invalid(
                "--device",
                format!(
                    "device `{0}`: this build has no {0} backend; rebuild with `--features {0}` (e.g. `cargo build --release --features {0}`)",
                    self.name()
                ),
            ));
        }
        match self {
            Self::Cpu if index == 0 => Ok(Device::flex()),
            Self::Cpu => Err(QatError::invalid("--device", format!("device cpu:{index}: the CPU backend has one device, cpu:0"))),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => {
                use burn::tensor::DeviceKind;
                Ok(Device::wgpu(if index == 0 { DeviceKind::DefaultDevice } else { DeviceKind::DiscreteGpu(index) }))
            }
            #[cfg(feature = "cuda")]
            Self::Cuda => Ok(Device::cuda(index)),
            #[cfg(feature = "rocm")]
            Self::Rocm => Ok(Device::rocm(index)),
            #[allow(unreachable_patterns)]
            _ => unreachable!("a backend not compiled in was refused above"),
        }
    }

    /// `count` distinct devices of this kind, for data-parallel training: the first `count`
    /// the backend lists, or an error saying how many there are.
    pub fn devices(self, count: usize) -> Result<Vec<Device>> {
        if count == 0 {
            return Err(QatError::invalid("--devices", "--devices must be at least 1"));
        }
        if count == 1 {
            return Ok(vec![self.device(0)?]);
        }
        self.device(0)?;
        let found = self.enumerate();
        if found.len() < count {
            return Err(QatError::invalid(
                "--devices",
                format!(
                    "--devices {count}: this machine has {} {} device{} (the CPU backend is one device that already uses every core)",
                    found.len(),
                    self.name(),
                    if found.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        Ok(found.into_iter().take(count).collect())
    }

    /// Every device of this kind the backend can see.
    fn enumerate(self) -> Vec<Device> {
        #[allow(unused_imports)]
        use burn::tensor::DeviceType;
        match self {
            Self::Cpu => vec![Device::flex()],
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Device::enumerate(DeviceType::Wgpu).into_iter().collect(),
            #[cfg(feature = "cuda")]
            Self::Cuda => Device::enumerate(DeviceType::Cuda).into_iter().collect(),
            #[cfg(feature = "rocm")]
            Self::Rocm => Device::enumerate(DeviceType::Rocm).into_iter().collect(),
            #[allow(unreachable_patterns)]
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Accelerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Accelerator {
    type Err = QatError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == s.to_ascii_lowercase())
            .ok_or_else(|| QatError::invalid("--device", format!("unknown device `{s}`: expected one of cpu, wgpu, cuda, rocm")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for a in Accelerator::ALL {
            assert_eq!(a.name().parse::<Accelerator>().unwrap(), a);
        }
        assert!(matches!(
            "tpu".parse::<Accelerator>(),
            Err(QatError::InvalidConfig { field, reason }) if field == "--device" && reason.contains("cpu, wgpu, cuda, rocm")
        ));
    }

    #[test]
    fn a_backend_not_compiled_in_names_its_feature() {
        for a in Accelerator::ALL.into_iter().filter(|a| !a.compiled_in()) {
            let err = a.device(0).unwrap_err().to_string();
            assert!(err.contains(&format!("--features {}", a.name())), "{err}");
        }
        assert!(Accelerator::Cpu.device(1).is_err());
        assert!(Accelerator::Cpu.devices(0).is_err());
        assert!(matches!(
            Accelerator::Cpu.devices(2),
            Err(QatError::InvalidConfig { field, reason }) if field == "--devices" && reason.contains("has 1 cpu device ")
        ));
        assert_eq!(Accelerator::Cpu.devices(1).unwrap().len(), 1);
    }
}
