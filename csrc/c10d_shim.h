// masklab's C interface to libtorch's c10d (TCPStore, ProcessGroupGloo, ProcessGroupNCCL).
//
// Every fallible function returns NULL on success or an error message allocated with malloc,
// which the caller frees with masklab_c10d_free_error. No C++ exception crosses this boundary.
// Tensors are torch-sys' `C_tensor` (an `at::Tensor*`), borrowed for the duration of the call.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct masklab_store masklab_store;
typedef struct masklab_pg masklab_pg;

// Reduction operators (c10d::ReduceOp's order is not used: these are our own codes).
enum masklab_reduce_op { MASKLAB_SUM = 0, MASKLAB_AVG = 1, MASKLAB_MAX = 2, MASKLAB_MIN = 3 };

void masklab_c10d_free_error(char* error);
void masklab_c10d_free_bytes(uint8_t* bytes);

// A TCPStore. `is_server`: host it (port 0 = any free port); else connect to host:port, retrying
// until `timeout_ms`. `world_size` <= 0: unknown (a server then waits for nobody).
char* masklab_store_tcp(const char* host, uint16_t port, int is_server, int world_size, int64_t timeout_ms,
                        masklab_store** out);
// A view of `base` whose keys all start with `prefix` (c10d::PrefixStore).
char* masklab_store_prefixed(masklab_store* base, const char* prefix, masklab_store** out);
// The port a TCPStore listens on (or connected to); 0 for other stores.
uint16_t masklab_store_port(masklab_store* store);
char* masklab_store_set(masklab_store* store, const char* key, const uint8_t* data, size_t len);
// Blocks until the key exists (up to the store's timeout). *data is freed with masklab_c10d_free_bytes.
char* masklab_store_get(masklab_store* store, const char* key, uint8_t** data, size_t* len);
char* masklab_store_add(masklab_store* store, const char* key, int64_t delta, int64_t* out);
void masklab_store_free(masklab_store* store);

// A Gloo process group over `store`. `ifnames`: comma-separated network interfaces to bind
// (GLOO_SOCKET_IFNAME's syntax) or NULL/"" for the default (the address of this host's name,
// else loopback). `timeout_ms` bounds every collective.
char* masklab_pg_gloo(masklab_store* store, int rank, int world_size, int64_t timeout_ms, const char* ifnames,
                      int threads, masklab_pg** out);
// An NCCL process group over tensors on CUDA device `device_index`. Fails when built without NCCL.
char* masklab_pg_nccl(masklab_store* store, int rank, int world_size, int64_t timeout_ms, int device_index,
                      masklab_pg** out);
// 1 when masklab was built with the NCCL backend.
int masklab_c10d_has_nccl(void);
// The least severity of libtorch's own log lines (c10's LOG: 0 info, 1 warning, 2 error,
// 3 fatal) that reach stderr; c10d logs each failed store connection with its C++ stack frames.
void masklab_set_cpp_log_level(int level);

char* masklab_pg_allreduce(masklab_pg* pg, void* tensor, int op);
char* masklab_pg_broadcast(masklab_pg* pg, void* tensor, int root);
// outputs: world_size tensors of the input's shape, dtype and device, written in rank order.
char* masklab_pg_allgather(masklab_pg* pg, void* input, void* const* outputs, size_t n_outputs);
char* masklab_pg_barrier(masklab_pg* pg);
void masklab_pg_free(masklab_pg* pg);

#ifdef __cplusplus
}
#endif
