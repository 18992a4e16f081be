#!/usr/bin/env bash
# Builds the model worker with CUDA (`cargo build -p lectern-worker
# --features cuda`, dev profile) on a machine with no GPU, no driver and no
# system CUDA toolkit, and copies it to $CARGO_TARGET_DIR/cuda/lectern-worker.
#
#   scripts/cuda-worker.sh           build
#   scripts/cuda-worker.sh --check   build, then run crates/worker/tests/cuda_build.rs
#                                    and crates/cli/tests/worker_cli.rs against
#                                    the built binary and print its size and
#                                    load-time dependencies
#
# How the build differs from a CPU build:
# * the compiler comes from scripts/cuda-toolchain.sh (CUDA 13.0 from PyPI);
# * it has its own target dir (~/.cache/lectern/target-cuda): the `cuda`
#   feature changes candle-core's build, and sharing the CPU target dir would
#   rebuild candle back and forth;
# * cudarc loads libcuda, cuBLAS, cuRAND and NVRTC with dlopen when first
#   used instead of naming them as load-time dependencies. candle-core asks
#   cudarc for `dynamic-linking`, with which the dynamic loader refuses to
#   start the binary on a machine without the driver, before any of
#   Lectern's code runs. The build therefore uses a copy of the same cudarc
#   release whose `dynamic-linking` feature means `dynamic-loading` (made
#   here from the crate in Cargo's registry, two edits, checked below), and
#   links the CUDA runtime statically (libcudart_static.a). The [patch] is
#   given on the command line, to a snapshot of the working tree in
#   ~/.cache/lectern/cuda/src, so the repository's Cargo.lock stays as it is.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/env.sh
eval "$(bash scripts/cuda-toolchain.sh)"

check=false
for arg in "$@"; do
  case $arg in
    --check) check=true ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
  esac
done

cache=$HOME/.cache/lectern/cuda
cuda_target=${LECTERN_CUDA_TARGET_DIR:-$HOME/.cache/lectern/target-cuda}
cudarc_version=$(awk '/^name = "cudarc"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)

# --- cudarc loading its libraries at run time --------------------------------
registry_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$cudarc_version" 2>/dev/null | head -n1 || true)
if [[ -z $registry_src ]]; then
  cargo fetch --locked >/dev/null
  registry_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$cudarc_version" | head -n1)
fi
cudarc=$cache/cudarc-$cudarc_version-dlopen
if [[ ! -f $cudarc/.lectern-patched ]]; then
  rm -rf "$cudarc"
  cp -r "$registry_src" "$cudarc"
  # The build script links the libraries when it sees `dynamic-linking`:
  # make that condition false (`any()` of nothing)…
  sed -i 's/feature = "dynamic-linking"/any()/g' "$cudarc/build.rs"
  # …and make `dynamic-linking`, which candle-core asks for, turn on loading.
  sed -i 's/^dynamic-linking = \[\]$/dynamic-linking = ["dynamic-loading"]/' "$cudarc/Cargo.toml"
  grep -q '^dynamic-linking = \["dynamic-loading"\]$' "$cudarc/Cargo.toml"
  if grep -q 'feature = "dynamic-linking"' "$cudarc/build.rs"; then
    echo "error: cudarc's build script still links the CUDA libraries" >&2
    exit 1
  fi
  touch "$cudarc/.lectern-patched"
fi

# --- a snapshot of the working tree -------------------------------------------
src=$cache/src
rm -rf "$src"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done \
  | tar --null --files-from=- -cf - | tar -xf - -C "$src"

# --- build -------------------------------------------------------------------
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$LECTERN_CUDA_LINK_DIR"
t0=$(date +%s)
(
  cd "$src"
  nice -n 10 cargo build -p lectern-worker --features cuda \
    --target-dir "$cuda_target" \
    --config "patch.crates-io.cudarc.path='$cudarc'"
)
t1=$(date +%s)
mkdir -p "$CARGO_TARGET_DIR/cuda"
worker=$CARGO_TARGET_DIR/cuda/lectern-worker
cp "$cuda_target/debug/lectern-worker" "$worker.tmp"
mv "$worker.tmp" "$worker"
echo "built $worker in $((t1 - t0)) s (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)" >&2

# The binary must start where there is no driver: no CUDA library may be a
# load-time dependency.
if ldd "$worker" | grep -E 'lib(cuda|cublas|cublasLt|curand|nvrtc|cudart)\.so'; then
  echo "error: $worker needs CUDA libraries to start" >&2
  exit 1
fi

if $check; then
  stripped=$(mktemp)
  strip -o "$stripped" "$worker"
  echo "size: $(stat -c %s "$worker") bytes, stripped $(stat -c %s "$stripped") bytes" >&2
  rm -f "$stripped"
  echo "ldd $worker:" >&2
  ldd "$worker" >&2
  export LECTERN_CUDA_WORKER=$worker
  nice -n 10 cargo test -p lectern-worker --test cuda_build -- --nocapture --test-threads=1
  nice -n 10 cargo test -p lectern-cli --test worker_cli
fi
