#!/usr/bin/env bash
# End-to-end test of the desktop app in its real webview: builds the UI and
# the app, then drives it under Xvfb through tauri-driver and WebKitWebDriver
# (ui/e2e/app_e2e.py). Needs the Debian packages `webkit2gtk-driver` and
# `xvfb` (scripts/setup.sh), tauri-driver (scripts/setup.sh --test-tools) and
# the test models (scripts/setup.sh --models).
#
#   scripts/app-e2e.sh                  build the UI and the app, run the flows
#   scripts/app-e2e.sh --no-ui-build    use ui/dist as it is (scripts/test.sh has just built it)
#
# Screenshots, and the log of the driver and the app (webdriver.log), go to
# $LECTERN_E2E_OUT (default: e2e-screens/ in the Cargo target dir); the
# screenshots of the previous run are removed first. LECTERN_E2E_TIMEOUT
# (seconds, default 900) bounds the drive. However the run ends, the app,
# WebKitWebDriver and Xvfb are stopped.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/env.sh

build_ui=1
for a in "$@"; do
  case $a in
    --no-ui-build) build_ui=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

fail() { echo "app e2e: $*" >&2; exit 1; }

shared=${LECTERN_SHARED_DIR:-$root/../shared}
models=${LECTERN_MODELS_DIR:-$HOME/.cache/lectern/models}
limit=${LECTERN_E2E_TIMEOUT:-900}
mkdir -p "$CARGO_TARGET_DIR"
out=${LECTERN_E2E_OUT:-$(cd "$CARGO_TARGET_DIR" && pwd)/e2e-screens}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/*.png "$out/webdriver.log"

for tool in WebKitWebDriver xvfb-run python3; do
  command -v "$tool" >/dev/null || fail "$tool is not installed; scripts/setup.sh installs it"
done
command -v tauri-driver >/dev/null || fail "tauri-driver is not installed; scripts/setup.sh --test-tools installs it"
for m in all-MiniLM-L6-v2 tiny-qwen3 tiny-reranker; do
  [[ -d $models/$m ]] || fail "the test model $models/$m is missing; run scripts/setup.sh --models"
done
[[ -d $shared/eval/docs/md ]] || fail "no test documents in $shared/eval/docs/md (set LECTERN_SHARED_DIR)"

t0=$(date +%s)
if ((build_ui)); then
  npm --prefix ui ci --no-audit --no-fund --loglevel=error
  npm --prefix ui run build --silent
fi
[[ -f ui/dist/index.html ]] || fail "ui/dist is not built (npm --prefix ui run build)"
# `tauri/custom-protocol` makes the binary serve the built UI from ui/dist.
# Naming lectern-cli too makes Cargo resolve features as `cargo test
# --workspace` does (clap turns on a default feature of anstream, which the
# PDF parser's logger also uses), so after the test suite has built with
# the same `--features`, only the app's binary is compiled here.
cargo build -p lectern-app -p lectern-cli --features tauri/custom-protocol --locked
t_build=$(($(date +%s) - t0))

data=$(mktemp -d -t lectern-e2e-data-XXXXXX)
pgid_file=$data/driver.pgid
cleanup() {
  # The test stops the driver's process group itself; this covers a test
  # that was killed before it could.
  if [[ -s $pgid_file ]]; then
    local pg
    pg=$(<"$pgid_file")
    # Live members only: a member that has exited may wait a moment to be
    # reaped, and is no cause for alarm.
    if ps -e -o pgid=,stat= | awk -v pg="$pg" '$1 == pg && $2 !~ /^Z/ { found = 1 } END { exit !found }'; then
      echo "app e2e: stopping the app and WebKitWebDriver left running (process group $pg)" >&2
      kill -TERM -- "-$pg" 2>/dev/null || true
      sleep 2
      kill -KILL -- "-$pg" 2>/dev/null || true
    fi
  fi
  rm -rf "$data"
}
trap cleanup EXIT

export LECTERN_DATA_DIR=$data/library
export LECTERN_MODELS_DIR=$models
export LECTERN_LLM=$models/tiny-qwen3
export LECTERN_RERANKER=tiny-reranker
export LECTERN_DEVICE=cpu
echo "== app e2e: driving $CARGO_TARGET_DIR/debug/lectern-app under Xvfb (time limit ${limit}s)" >&2
t1=$(date +%s)
status=0
timeout --kill-after=30 "$limit" xvfb-run -a -s "-screen 0 1400x900x24" \
  python3 ui/e2e/app_e2e.py --app "$CARGO_TARGET_DIR/debug/lectern-app" --tauri-driver "$(command -v tauri-driver)" \
  --docs "$shared/eval/docs/md" --dist "$root/ui/dist" --out "$out" --pgid-file "$pgid_file" || status=$?
t_run=$(($(date +%s) - t1))

if ((status != 0)); then
  if ((status == 124 || status == 137)); then
    echo "app e2e FAILED: no result within ${limit}s (LECTERN_E2E_TIMEOUT)" >&2
  else
    echo "app e2e FAILED (exit status $status); the failing check is printed above" >&2
  fi
  if [[ -s $out/webdriver.log ]]; then
    echo "-- last lines of $out/webdriver.log (driver and app):" >&2
    tail -n 40 "$out/webdriver.log" >&2
  fi
  echo "screenshots and logs in $out" >&2
  exit 1
fi
echo "app e2e passed: build ${t_build}s, run ${t_run}s" >&2
echo "screenshots in $out:" >&2
ls -1 "$out"/*.png >&2
