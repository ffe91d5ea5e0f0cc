# Source this to build with cargo directly: `source scripts/env.sh && cargo build --release`.
# torch-sys finds libtorch through the .venv's python (LIBTORCH_USE_PYTORCH=1).
_masklab_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$_masklab_root/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
unset _masklab_root
