#!/usr/bin/env bash
# End-to-end test of the desktop app in its real webview: builds the UI and
# the app, then drives it under Xvfb through WebKitWebDriver
# (ui/e2e/app_e2e.py). Needs the Debian packages `webkit2gtk-driver` and
# `xvfb` and the test models (scripts/setup.sh --models).
# Screenshots go to $LECTERN_E2E_OUT (default: a fresh temporary folder).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/env.sh
shared=${LECTERN_SHARED_DIR:-$root/../shared}
models=${LECTERN_MODELS_DIR:-$HOME/.cache/lectern/models}
out=${LECTERN_E2E_OUT:-$(mktemp -d -t lectern-e2e-XXXXXX)}
data=$(mktemp -d -t lectern-e2e-data-XXXXXX)
trap 'rm -rf "$data"' EXIT

npm --prefix ui ci --no-audit --no-fund --loglevel=error
npm --prefix ui run build --silent
cargo build -p lectern-app --features tauri/custom-protocol --locked

export LECTERN_DATA_DIR=$data
export LECTERN_MODELS_DIR=$models
export LECTERN_LLM=$models/tiny-qwen3
export LECTERN_DEVICE=cpu
timeout 900 xvfb-run -a -s "-screen 0 1400x900x24" \
  python3 ui/e2e/app_e2e.py --app "$CARGO_TARGET_DIR/debug/lectern-app" \
  --docs "$shared/eval/docs/md" --out "$out"
echo "screenshots in $out"
