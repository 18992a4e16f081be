#!/usr/bin/env bash
# Sets up everything the tests need on Debian 12 and runs them:
# formatting, clippy (warnings are errors), the web UI's component tests
# and the whole Rust test suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh --models
source scripts/env.sh

t0=$(date +%s)
echo "== web UI" >&2
npm --prefix ui ci --no-audit --no-fund --loglevel=error
npm --prefix ui run build --silent
npm --prefix ui test --silent

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

echo "== cargo test" >&2
cargo test --workspace --locked

echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== all checks passed in $(( $(date +%s) - t0 ))s" >&2
