//! The C functions of `csrc/c10d_shim.h` (compiled by build.rs). Only `dist/mod.rs` calls them.
use std::os::raw::{c_char, c_int, c_void};

#[repr(C)]
pub struct RawStore {
    _private: [u8; 0],
}

#[repr(C)]
pub struct RawProcessGroup {
    _private: [u8; 0],
}

pub const OP_SUM: c_int = 0;
pub const OP_AVG: c_int = 1;
pub const OP_MAX: c_int = 2;
pub const OP_MIN: c_int = 3;

extern "C" {
    pub fn masklab_c10d_free_error(error: *mut c_char);
    pub fn masklab_c10d_free_bytes(bytes: *mut u8);
    pub fn masklab_c10d_has_nccl() -> c_int;
    pub fn masklab_set_cpp_log_level(level: c_int);

    pub fn masklab_store_tcp(
        host: *const c_char,
        port: u16,
        is_server: c_int,
        world_size: c_int,
        timeout_ms: i64,
        out: *mut *mut RawStore,
    ) -> *mut c_char;
    pub fn masklab_store_prefixed(base: *mut RawStore, prefix: *const c_char, out: *mut *mut RawStore) -> *mut c_char;
    pub fn masklab_store_port(store: *mut RawStore) -> u16;
    pub fn masklab_store_set(store: *mut RawStore, key: *const c_char, data: *const u8, len: usize) -> *mut c_char;
    pub fn masklab_store_get(store: *mut RawStore, key: *const c_char, data: *mut *mut u8, len: *mut usize) -> *mut c_char;
    pub fn masklab_store_add(store: *mut RawStore, key: *const c_char, delta: i64, out: *mut i64) -> *mut c_char;
    pub fn masklab_store_free(store: *mut RawStore);

    pub fn masklab_pg_gloo(
        store: *mut RawStore,
        rank: c_int,
        world_size: c_int,
        timeout_ms: i64,
        ifnames: *const c_char,
        threads: c_int,
        out: *mut *mut RawProcessGroup,
    ) -> *mut c_char;
    pub fn masklab_pg_nccl(
        store: *mut RawStore,
        rank: c_int,
        world_size: c_int,
        timeout_ms: i64,
        device_index: c_int,
        out: *mut *mut RawProcessGroup,
    ) -> *mut c_char;
    pub fn masklab_pg_allreduce(pg: *mut RawProcessGroup, tensor: *mut c_void, op: c_int) -> *mut c_char;
    pub fn masklab_pg_broadcast(pg: *mut RawProcessGroup, tensor: *mut c_void, root: c_int) -> *mut c_char;
    pub fn masklab_pg_allgather(
        pg: *mut RawProcessGroup,
        input: *mut c_void,
        outputs: *const *mut c_void,
        n_outputs: usize,
    ) -> *mut c_char;
    pub fn masklab_pg_barrier(pg: *mut RawProcessGroup) -> *mut c_char;
    pub fn masklab_pg_free(pg: *mut RawProcessGroup);
}
