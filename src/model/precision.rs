//! Mixed precision of forward passes: autocast to bfloat16 (CPU or CUDA) or float16 (CUDA), and
//! whether this CPU computes bfloat16 natively.
//!
//! libtorch keeps one autocast switch and dtype per device type and thread; tch's `autocast`
//! only reaches the CUDA one, so [`Autocast::run`] goes through masklab's C++ shim
//! (`csrc/autocast_shim.cpp`), which does what `torch.autocast(device, dtype)` does.
use tch::Device;

mod ffi {
    use std::os::raw::c_int;
    extern "C" {
        pub fn masklab_autocast_enter(cuda: c_int, bf16: c_int, prev_enabled: *mut c_int, prev_dtype: *mut c_int);
        pub fn masklab_autocast_exit(cuda: c_int, prev_enabled: c_int, prev_dtype: c_int);
        pub fn masklab_autocast_is_enabled(cuda: c_int) -> c_int;
    }
}

/// The precision forward passes run in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Autocast {
    /// float32 throughout.
    #[default]
    Off,
    /// float16 autocast (CUDA), with dynamic loss scaling in training.
    Fp16,
    /// bfloat16 autocast (CPU or CUDA): float32's range, so no loss scaling.
    Bf16,
}

/// What `train.amp` asks for, before the device is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    None,
    Fp16,
    Bf16,
}

impl Autocast {
    /// The autocast a run on `device` uses for `requested`, and a warning when it is not what was
    /// asked. fp16 is CUDA-only (ignored on the CPU, as documented for `train.amp`); bf16 on the
    /// CPU needs native bfloat16 arithmetic (`cpu_bf16`, see [`cpu_has_native_bf16`]): without
    /// it libtorch emulates bf16, slower than float32, so the run stays in float32 and says so.
    pub fn choose(requested: Requested, device: Device, cpu_bf16: bool) -> (Autocast, Option<String>) {
        match requested {
            Requested::None => (Autocast::Off, None),
            Requested::Fp16 if device.is_cuda() => (Autocast::Fp16, None),
            Requested::Fp16 => (Autocast::Off, None),
            Requested::Bf16 if device.is_cuda() || cpu_bf16 => (Autocast::Bf16, None),
            Requested::Bf16 => (
                Autocast::Off,
                Some(
                    "train.amp = \"bf16\": this CPU has no native bfloat16 (AVX512_BF16 or AMX on x86, BF16 on Arm), \
                     where bf16 would be slower than float32; running in float32"
                        .to_string(),
                ),
            ),
        }
    }

    /// fp16 needs the loss scaled against underflow; bf16 and float32 do not.
    pub fn scales_loss(self) -> bool {
        self == Autocast::Fp16
    }

    /// Runs `f` with this autocast on for `device` (on this thread), as `with torch.autocast(...)`.
    pub fn run<T>(self, device: Device, f: impl FnOnce() -> T) -> T {
        let bf16 = match self {
            Autocast::Off => return f(),
            Autocast::Fp16 => 0,
            Autocast::Bf16 => 1,
        };
        let cuda = device.is_cuda() as i32;
        let (mut prev_enabled, mut prev_dtype) = (0, 0);
        // SAFETY: plain values in and out; the shim only sets libtorch's thread-local state.
        unsafe { ffi::masklab_autocast_enter(cuda, bf16, &mut prev_enabled, &mut prev_dtype) };
        // Restores the previous state even if `f` panics.
        struct Restore {
            cuda: i32,
            prev_enabled: i32,
            prev_dtype: i32,
        }
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: hands back the state the matching enter wrote.
                unsafe { ffi::masklab_autocast_exit(self.cuda, self.prev_enabled, self.prev_dtype) };
            }
        }
        let _restore = Restore { cuda, prev_enabled, prev_dtype };
        f()
    }
}

/// Whether autocast is on for `device` on this thread.
pub fn autocast_enabled(device: Device) -> bool {
    // SAFETY: reads libtorch's thread-local state.
    unsafe { ffi::masklab_autocast_is_enabled(device.is_cuda() as i32) != 0 }
}

/// Whether this CPU has bfloat16 arithmetic that oneDNN uses: AVX512_BF16 on x86 (every CPU
/// with AMX has it too), BF16 on Arm. Read once at start from the CPU (and the OS's support).
pub fn cpu_has_native_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("bf16")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, nn::ModuleT, nn::OptimizerConfig, Kind, Tensor};

    #[test]
    fn the_autocast_follows_the_request_the_device_and_the_cpu() {
        let (cpu, cuda) = (Device::Cpu, Device::Cuda(0));
        assert_eq!(Autocast::choose(Requested::None, cuda, true), (Autocast::Off, None));
        assert_eq!(Autocast::choose(Requested::Fp16, cuda, false), (Autocast::Fp16, None));
        assert_eq!(Autocast::choose(Requested::Fp16, cpu, true), (Autocast::Off, None), "fp16 is CUDA-only");
        assert_eq!(Autocast::choose(Requested::Bf16, cuda, false), (Autocast::Bf16, None));
        assert_eq!(Autocast::choose(Requested::Bf16, cpu, true), (Autocast::Bf16, None));
        let (autocast, warning) = Autocast::choose(Requested::Bf16, cpu, false);
        assert_eq!(autocast, Autocast::Off);
        let warning = warning.expect("a CPU without bf16 says why it runs in float32");
        assert!(warning.contains("bf16") && warning.contains("AVX512_BF16") && warning.contains("float32"), "{warning}");
        assert!(Autocast::Fp16.scales_loss() && !Autocast::Bf16.scales_loss() && !Autocast::Off.scales_loss());
    }

    #[test]
    fn cpu_autocast_runs_matmuls_in_bf16_and_restores_the_state() {
        let a = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        assert!(!autocast_enabled(Device::Cpu));
        let kind = Autocast::Bf16.run(Device::Cpu, || {
            assert!(autocast_enabled(Device::Cpu));
            // Nested regions restore the outer one's state on their way out.
            Autocast::Bf16.run(Device::Cpu, || assert!(autocast_enabled(Device::Cpu)));
            assert!(autocast_enabled(Device::Cpu));
            a.matmul(&b).kind()
        });
        assert_eq!(kind, Kind::BFloat16);
        assert!(!autocast_enabled(Device::Cpu));
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
        assert_eq!(Autocast::Off.run(Device::Cpu, || a.matmul(&b).kind()), Kind::Float);
        // A panic inside the region leaves autocast off behind it.
        let caught = std::panic::catch_unwind(|| Autocast::Bf16.run(Device::Cpu, || panic!("inside")));
        assert!(caught.is_err());
        assert!(!autocast_enabled(Device::Cpu));
    }

    #[test]
    fn a_bf16_training_step_on_the_cpu_gives_a_finite_loss_and_float32_gradients() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = nn::seq_t()
            .add(nn::conv2d(vs.root() / "conv", 3, 8, 3, Default::default()))
            .add(nn::batch_norm2d(vs.root() / "bn", 8, Default::default()))
            .add_fn(|x| x.relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1))
            .add(nn::linear(vs.root() / "fc", 8, 18, Default::default()));
        let mut opt = nn::AdamW::default().build(&vs, 1e-3).unwrap();
        let x = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 5, 17, 9]);
        let before = (vs.root() / "fc").get("weight").unwrap().copy();
        let out = Autocast::Bf16.run(Device::Cpu, || net.forward_t(&x, true));
        assert_eq!(out.kind(), Kind::BFloat16, "the layers ran in bf16");
        let loss = out.to_kind(Kind::Float).cross_entropy_for_logits(&y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        let loss = loss.double_value(&[]);
        assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
        let after = (vs.root() / "fc").get("weight").unwrap();
        assert_eq!(after.kind(), Kind::Float, "the weights stay float32");
        assert!(!after.allclose(&before, 0.0, 0.0, false), "the step moved the weights");
    }
}
