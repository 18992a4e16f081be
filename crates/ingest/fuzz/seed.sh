#!/usr/bin/env bash
# Seeds each fuzz target's corpus with real documents from the shared
# evaluation set. Usage: seed.sh [CORPUS_DIR] (default ~/.cache/lectern/fuzz/corpus)
set -euo pipefail
docs=${LECTERN_SHARED_DIR:-$(cd "$(dirname "$0")/../../../.." && pwd)/shared}/eval/docs
out=${1:-$HOME/.cache/lectern/fuzz/corpus}
seed() { # target extension...
  local target=$1; shift
  mkdir -p "$out/$target"
  for ext in "$@"; do
    find "$docs" -type f -name "*.$ext" -size -400k | head -4 | while read -r f; do
      cp "$f" "$out/$target/"
    done
  done
}
seed pdf pdf; seed docx docx; seed pptx pptx; seed xlsx xlsx xls; seed ods ods xlsx
seed csv csv tsv; seed html html htm; seed epub epub; seed markdown md txt
du -sh "$out"/*
