// The NCCL process group, compiled only when libtorch has CUDA and nccl.h is found (build.rs).
// Apart from c10d_shim.cpp so that a CPU-only libtorch builds without CUDA or NCCL headers.
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

c10::intrusive_ptr<c10d::Backend> masklab_make_nccl_backend(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int world_size, std::chrono::milliseconds timeout,
    int device_index) {
  // As `torch.cuda.set_device(local_rank)` in a DDP script: this rank's kernels, NCCL streams and
  // allocations then default to its own GPU.
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_index));
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
}
