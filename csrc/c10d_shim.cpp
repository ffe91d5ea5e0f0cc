// masklab's C interface to libtorch's c10d: see c10d_shim.h. Compiled by build.rs.
#include "c10d_shim.h"

#include <ATen/ATen.h>
#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>

struct masklab_store {
  c10::intrusive_ptr<c10d::Store> store;
  uint16_t port;
};

struct masklab_pg {
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  bool nccl;
  int world_size;
  int device_index;  // the CUDA device of an NCCL group's tensors
};

#ifdef MASKLAB_C10D_NCCL
// c10d_nccl.cpp: kept apart so that the CUDA and NCCL headers are needed only when they exist.
c10::intrusive_ptr<c10d::Backend> masklab_make_nccl_backend(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int world_size, std::chrono::milliseconds timeout,
    int device_index);
#endif

namespace {

char* copy_message(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, message.c_str(), message.size() + 1);
  }
  return out;
}

// Runs `body`, turning any C++ exception into an error message for the caller.
template <class F>
char* guarded(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    return copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return copy_message(e.what());
  } catch (...) {
    return copy_message("unknown C++ exception in c10d");
  }
}

at::Tensor& as_tensor(void* tensor) {
  return *static_cast<at::Tensor*>(tensor);
}

// Starts a collective. libtorch's flight recorder (one per process) adds a group to its table on
// the group's first collective without holding its own lock (FlightRecorderDetail.hpp,
// recordWithResetEnabled), so two groups of one process starting collectives at once can corrupt
// that table: the tests, which run each rank as a thread of one process, crashed there about once
// in a hundred runs. Gloo only queues the work here, so starting its collectives one at a time
// costs nothing. NCCL's first collective blocks until every rank has built its communicator, so
// its groups (one per process, never threads of one) are not serialised.
template <class F>
c10::intrusive_ptr<c10d::Work> start(masklab_pg* pg, F&& collective) {
  if (pg->nccl) {
    return collective();
  }
  static std::mutex gloo_start_mutex;
  std::lock_guard<std::mutex> lock(gloo_start_mutex);
  return collective();
}

// Waits for a collective; a timeout or a peer's failure surfaces here as an exception.
void finish(masklab_pg* pg, const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  if (!work->wait(pg->timeout)) {
    std::ostringstream message;
    message << what << " timed out after " << pg->timeout.count() << " ms";
    throw std::runtime_error(message.str());
  }
}

} // namespace

extern "C" {

void masklab_c10d_free_error(char* error) {
  std::free(error);
}

void masklab_c10d_free_bytes(uint8_t* bytes) {
  std::free(bytes);
}

char* masklab_store_tcp(const char* host, uint16_t port, int is_server, int world_size, int64_t timeout_ms,
                        masklab_store** out) {
  *out = nullptr;
  return guarded([&] {
    c10d::TCPStoreOptions options;
    options.port = port;
    options.isServer = is_server != 0;
    if (world_size > 0) {
      options.numWorkers = static_cast<std::size_t>(world_size);
    }
    // Nobody waits for the others here: a hosting launcher starts its workers only afterwards, and
    // joining a process group is what synchronises the ranks.
    options.waitWorkers = false;
    options.timeout = std::chrono::milliseconds(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    uint16_t bound = store->getPort();
    *out = new masklab_store{store, bound};
  });
}

char* masklab_store_prefixed(masklab_store* base, const char* prefix, masklab_store** out) {
  *out = nullptr;
  return guarded([&] {
    auto store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), base->store);
    *out = new masklab_store{store, base->port};
  });
}

uint16_t masklab_store_port(masklab_store* store) {
  return store->port;
}

char* masklab_store_set(masklab_store* store, const char* key, const uint8_t* data, size_t len) {
  return guarded([&] { store->store->set(std::string(key), std::vector<uint8_t>(data, data + len)); });
}

char* masklab_store_get(masklab_store* store, const char* key, uint8_t** data, size_t* len) {
  *data = nullptr;
  *len = 0;
  return guarded([&] {
    std::vector<uint8_t> value = store->store->get(std::string(key));
    auto* bytes = static_cast<uint8_t*>(std::malloc(value.empty() ? 1 : value.size()));
    if (bytes == nullptr) {
      throw std::bad_alloc();
    }
    if (!value.empty()) {
      std::memcpy(bytes, value.data(), value.size());
    }
    *data = bytes;
    *len = value.size();
  });
}

char* masklab_store_add(masklab_store* store, const char* key, int64_t delta, int64_t* out) {
  return guarded([&] { *out = store->store->add(std::string(key), delta); });
}

void masklab_store_free(masklab_store* store) {
  try {
    delete store;
  } catch (...) {
  }
}

char* masklab_pg_gloo(masklab_store* store, int rank, int world_size, int64_t timeout_ms, const char* ifnames,
                      int threads, masklab_pg** out) {
  *out = nullptr;
  return guarded([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    std::string names = ifnames != nullptr ? ifnames : "";
    std::stringstream list(names);
    std::string name;
    while (std::getline(list, name, ',')) {
      if (!name.empty()) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
      }
    }
    if (options->devices.empty()) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    if (threads > 0) {
      options->threads = threads;
    }
    // Connects to every peer through the store: blocks until all ranks arrive or the timeout.
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store->store, rank, world_size, options);
    *out = new masklab_pg{backend, timeout, false, world_size, -1};
  });
}

void masklab_set_cpp_log_level(int level) {
  FLAGS_caffe2_log_level = level;
}

int masklab_c10d_has_nccl(void) {
#ifdef MASKLAB_C10D_NCCL
  return 1;
#else
  return 0;
#endif
}

char* masklab_pg_nccl(masklab_store* store, int rank, int world_size, int64_t timeout_ms, int device_index,
                      masklab_pg** out) {
  *out = nullptr;
  return guarded([&] {
#ifdef MASKLAB_C10D_NCCL
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto backend = masklab_make_nccl_backend(store->store, rank, world_size, timeout, device_index);
    *out = new masklab_pg{backend, timeout, true, world_size, device_index};
#else
    (void)store;
    (void)rank;
    (void)world_size;
    (void)timeout_ms;
    (void)device_index;
    throw std::runtime_error("masklab was built against a libtorch without CUDA: the NCCL backend is unavailable");
#endif
  });
}

char* masklab_pg_allreduce(masklab_pg* pg, void* tensor, int op) {
  return guarded([&] {
    at::Tensor& t = as_tensor(tensor);
    std::vector<at::Tensor> tensors{t};
    c10d::AllreduceOptions options;
    options.timeout = pg->timeout;
    bool divide = false;
    switch (op) {
      case MASKLAB_SUM:
        options.reduceOp = c10d::ReduceOp::SUM;
        break;
      case MASKLAB_AVG:
        // Gloo has no AVG: sum, then divide (what DDP itself does).
        if (pg->nccl) {
          options.reduceOp = c10d::ReduceOp::AVG;
        } else {
          options.reduceOp = c10d::ReduceOp::SUM;
          divide = true;
        }
        break;
      case MASKLAB_MAX:
        options.reduceOp = c10d::ReduceOp::MAX;
        break;
      case MASKLAB_MIN:
        options.reduceOp = c10d::ReduceOp::MIN;
        break;
      default:
        throw std::invalid_argument("unknown reduce operation " + std::to_string(op));
    }
    if (divide && !at::isFloatingType(t.scalar_type())) {
      throw std::invalid_argument("averaging needs a floating-point tensor");
    }
    finish(pg, start(pg, [&] { return pg->backend->allreduce(tensors, options); }), "all-reduce");
    if (divide) {
      t.div_(pg->world_size);
    }
  });
}

char* masklab_pg_broadcast(masklab_pg* pg, void* tensor, int root) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{as_tensor(tensor)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.rootTensor = 0;
    options.timeout = pg->timeout;
    finish(pg, start(pg, [&] { return pg->backend->broadcast(tensors, options); }), "broadcast");
  });
}

char* masklab_pg_allgather(masklab_pg* pg, void* input, void* const* outputs, size_t n_outputs) {
  return guarded([&] {
    if (n_outputs != static_cast<size_t>(pg->world_size)) {
      throw std::invalid_argument("all-gather needs one output tensor per rank");
    }
    std::vector<at::Tensor> inputs{as_tensor(input)};
    std::vector<std::vector<at::Tensor>> gathered(1);
    for (size_t i = 0; i < n_outputs; ++i) {
      gathered[0].push_back(as_tensor(outputs[i]));
    }
    c10d::AllgatherOptions options;
    options.timeout = pg->timeout;
    finish(pg, start(pg, [&] { return pg->backend->allgather(gathered, inputs, options); }), "all-gather");
  });
}

char* masklab_pg_barrier(masklab_pg* pg) {
  return guarded([&] {
    if (pg->nccl) {
      // NCCL's own barrier guesses a device; an all-reduce on the group's, read back on the
      // host, both synchronises the ranks and blocks this thread until it is done.
      at::Device device(at::kCUDA, static_cast<c10::DeviceIndex>(pg->device_index));
      at::Tensor one = at::ones({1}, at::TensorOptions().dtype(at::kFloat).device(device));
      std::vector<at::Tensor> tensors{one};
      c10d::AllreduceOptions options;
      options.timeout = pg->timeout;
      finish(pg, pg->backend->allreduce(tensors, options), "barrier");
      (void)one.item<float>();
      return;
    }
    c10d::BarrierOptions options;
    options.timeout = pg->timeout;
    finish(pg, start(pg, [&] { return pg->backend->barrier(options); }), "barrier");
  });
}

void masklab_pg_free(masklab_pg* pg) {
  try {
    delete pg;
  } catch (...) {
  }
}

} // extern "C"
