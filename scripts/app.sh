#!/usr/bin/env bash
# Sets up Lectern on Debian 12 and launches the desktop app.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh --models
source scripts/env.sh
npm --prefix ui ci --no-audit --no-fund --loglevel=error
npm --prefix ui run build --silent
# The dev profile optimises the numeric crates (see Cargo.toml) and shares
# its build with the test suite; `ui/node_modules/.bin/tauri build` makes a
# release .deb instead.
# `tauri/custom-protocol` makes the binary serve the built UI from ui/dist
# instead of expecting the Vite dev server.
cargo build -p lectern-app --features tauri/custom-protocol --locked
cargo build -p lectern-cli --locked
exec "$CARGO_TARGET_DIR/debug/lectern-app" "$@"
