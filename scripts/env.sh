# Sourced by the other scripts: shared build settings.
# The Cargo target dir lives outside the clone so repeated runs reuse it.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lectern/target}
export PATH=$HOME/.cargo/bin:$PATH
export CARGO_TERM_PROGRESS_WHEN=never
