// masklab's C interface to libtorch's autocast state, for any device: tch's own `autocast`
// reaches only the deprecated CUDA-only switch (at::autocast::set_enabled), so CPU bf16 autocast
// needs these. Compiled by build.rs; src/model/precision.rs is the only caller.
//
// Enter and exit do what torch.autocast's __enter__ and __exit__ do: switch autocast on for the
// device with the dtype, count the nesting, and on the way out clear the cast cache (at the
// outermost exit) and restore the previous state. The state is thread-local, as in PyTorch.
#include <ATen/autocast_mode.h>

namespace {
at::DeviceType device_type(int cuda) { return cuda ? at::kCUDA : at::kCPU; }
}  // namespace

extern "C" {

// `cuda`: 1 for CUDA, 0 for the CPU. `bf16`: 1 for bfloat16, 0 for float16. Writes the state
// to hand back to masklab_autocast_exit.
void masklab_autocast_enter(int cuda, int bf16, int* prev_enabled, int* prev_dtype) noexcept {
  const auto device = device_type(cuda);
  *prev_enabled = at::autocast::is_autocast_enabled(device) ? 1 : 0;
  *prev_dtype = static_cast<int>(at::autocast::get_autocast_dtype(device));
  at::autocast::set_autocast_enabled(device, true);
  at::autocast::set_autocast_dtype(device, bf16 ? at::kBFloat16 : at::kHalf);
  at::autocast::increment_nesting();
}

void masklab_autocast_exit(int cuda, int prev_enabled, int prev_dtype) noexcept {
  const auto device = device_type(cuda);
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
  at::autocast::set_autocast_enabled(device, prev_enabled != 0);
  at::autocast::set_autocast_dtype(device, static_cast<at::ScalarType>(prev_dtype));
}

// Whether autocast is on for the device on this thread (for tests).
int masklab_autocast_is_enabled(int cuda) noexcept {
  return at::autocast::is_autocast_enabled(device_type(cuda)) ? 1 : 0;
}

}  // extern "C"
