#!/usr/bin/env bash
# Installs the CUDA 13.0 compiler toolchain that building the model worker
# with `--features cuda` needs, from NVIDIA's PyPI wheels (no system CUDA
# toolkit, no driver, no GPU needed), and prints the `export` lines a build
# uses:
#
#   eval "$(bash scripts/cuda-toolchain.sh)"
#
# The wheels go to ~/.cache/lectern/cuda/13.0 (pip install --target); a
# second run only checks that they are there. What each package brings:
#   nvidia-cuda-nvcc     nvcc, cudafe++, ptxas, fatbinary, nvlink
#   nvidia-cuda-crt      the crt/ headers nvcc's front end includes
#   nvidia-nvvm          cicc and libdevice (device code generation)
#   nvidia-cuda-runtime  cuda_runtime.h, cuda_fp16.h, cuda_bf16.h and
#                        libcudart_static.a (linked into the worker)
#   nvidia-cuda-cccl     libcu++/CUB/Thrust headers (include/cccl)
#
# CUDA_COMPUTE_CAP (default 90: H100/H200) picks the GPU architecture the
# kernels are compiled for; there is no nvidia-smi to ask on a build machine.
set -euo pipefail

version=13.0
prefix=${LECTERN_CUDA_PREFIX:-$HOME/.cache/lectern/cuda/$version}
packages=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
)
root=$prefix/nvidia/cu13
stamp=$prefix/.lectern-packages

# Reinstall only when the pinned set changed or a file is missing.
wanted=$(printf '%s\n' "${packages[@]}")
if [[ ! -f $stamp || $(cat "$stamp") != "$wanted" || ! -x $root/bin/nvcc \
      || ! -x $root/nvvm/bin/cicc || ! -f $root/include/cuda_bf16.h \
      || ! -f $root/lib/libcudart_static.a ]]; then
  echo "installing the CUDA $version toolchain into $prefix" >&2
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --upgrade --target "$prefix" "${packages[@]}" >&2
  printf '%s\n' "$wanted" >"$stamp"
fi

# `-lcudart` (asked for by candle-kernels) must find the static runtime:
# a directory holding only libcudart.a keeps libcudart.so out of the
# worker's load-time dependencies.
link=$prefix/link
mkdir -p "$link"
ln -sf "$root/lib/libcudart_static.a" "$link/libcudart.a"

# Fail here, with nvcc's own message, rather than deep inside a build.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <cuda_fp16.h>\n#include <cuda_bf16.h>\nextern "C" __global__ void k(__half *a, __nv_bfloat16 *b) { b[0] = __float2bfloat16(__half2float(a[0])); }\n' >"$probe/probe.cu"
PATH=$root/bin:$PATH "$root/bin/nvcc" --ptx -std=c++17 \
  -arch="sm_${CUDA_COMPUTE_CAP:-90}" "$probe/probe.cu" -o "$probe/probe.ptx" >&2

cat <<EOF
export PATH=$root/bin:\$PATH
export CUDA_ROOT=$root
export CUDA_PATH=$root
export CUDA_HOME=$root
export NVCC=$root/bin/nvcc
export CUDARC_CUDA_VERSION=13000
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export LECTERN_CUDA_LINK_DIR=$link
EOF
