#!/usr/bin/env bash
# Write the random-weight Qwen3-shaped GGUF files that `lectern bench llm`
# and the llama.cpp peer benchmark run on (speed does not depend on weight
# values, only on shapes and quantization).
#
#   models/bench_gguf.sh [--shape 0.6b|1.7b|4b|8b] [--quant Q4_K_M|Q5_K_M|Q6_K|Q8_0] [OUT_DIR]
#
# Defaults: --shape 0.6b --quant Q4_K_M, OUT_DIR ${LECTERN_BENCH_DIR:-$HOME/.cache/lectern/bench}.
# Writes OUT_DIR/qwen3-<shape>-<quant>.gguf (quant lower-cased) and prints its path.
# The file is made by the shared peer tooling (`shared/bench/peer.sh gguf`,
# found through LECTERN_SHARED_DIR or ../shared beside the repository), which
# installs gguf and llama-cpp-python on first use (llama.cpp's quantizer;
# pip compiles it, several minutes on a small machine). The tokenizer is the
# real Qwen3 one that models/provision.sh puts in the models folder.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SHARED="${LECTERN_SHARED_DIR:-$HERE/../../shared}"
MODELS="${LECTERN_MODELS_DIR:-$HOME/.cache/lectern/models}"
shape=0.6b
quant=Q4_K_M
out_dir="${LECTERN_BENCH_DIR:-$HOME/.cache/lectern/bench}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --shape) shape=$2; shift 2 ;;
    --quant) quant=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "bench_gguf: unknown option $1" >&2; exit 2 ;;
    *) out_dir=$1; shift ;;
  esac
done

peer="$SHARED/bench/peer.sh"
[[ -x $peer ]] || { echo "bench_gguf: $peer not found (set LECTERN_SHARED_DIR)" >&2; exit 1; }
tokenizer="$MODELS/qwen3-tokenizer/tokenizer.json"
[[ -f $tokenizer ]] || "$HERE/provision.sh" "$MODELS" >&2

mkdir -p "$out_dir"
out="$out_dir/qwen3-$shape-${quant,,}.gguf"
if [[ -s $out ]]; then
  echo "$out"
  exit 0
fi
# Written under a temporary name and moved into place, so an interrupted run
# never leaves a file that looks finished.
tmp="$out.partial"
rm -f "$tmp" "$tmp.f16.tmp"
"$peer" gguf --shape "$shape" --tokenizer "$tokenizer" --out "$tmp" --quant "$quant" >&2
mv "$tmp" "$out"
echo "$out"
