# Sourced by the other scripts: shared build settings.
# The Cargo target dir lives outside the clone so repeated runs reuse it.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lectern/target}
export PATH=$HOME/.cargo/bin:$PATH
# Node.js 22 from scripts/setup.sh, where the system's is older than 20.
if [[ -x $HOME/.cache/lectern/node/bin/node ]]; then
  export PATH=$HOME/.cache/lectern/node/bin:$PATH
fi
# Test tools from scripts/setup.sh --test-tools (tauri-driver).
export PATH=$HOME/.cache/lectern/tools/bin:$PATH
export CARGO_TERM_PROGRESS_WHEN=never
