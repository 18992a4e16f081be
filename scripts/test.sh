#!/usr/bin/env bash
# Sets up everything the tests need on Debian 12 and runs them:
# formatting, clippy (warnings are errors), the web UI's component tests,
# the whole Rust test suite and the desktop app's end-to-end test under Xvfb
# (scripts/app-e2e.sh; screenshots in e2e-screens/ of the Cargo target dir).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh --models --test-tools
source scripts/env.sh

t0=$(date +%s)
echo "== web UI" >&2
npm --prefix ui ci --no-audit --no-fund --loglevel=error
npm --prefix ui run build --silent
npm --prefix ui test --silent

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

echo "== cargo test" >&2
# The app is tested with the feature set its end-to-end run is built with
# (serving the built UI), so that run reuses this build of tauri and the
# engine instead of compiling them a second time.
cargo test --workspace --locked --features tauri/custom-protocol

echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== app e2e" >&2
bash scripts/app-e2e.sh --no-ui-build

echo "== all checks passed in $(( $(date +%s) - t0 ))s" >&2
