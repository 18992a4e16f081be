#!/usr/bin/env bash
# Installs what Lectern needs to build and run on Debian 12 (idempotent).
#   scripts/setup.sh          build tools, LanceDB's protoc, WebKitGTK for the app, Node, Rust
#   scripts/setup.sh --models also provision the models the tests use (models/provision.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

want_models=0
for a in "$@"; do
  case $a in
    --models) want_models=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

debs=(
  build-essential pkg-config curl ca-certificates unzip
  protobuf-compiler libprotobuf-dev libssl-dev
  python3 python3-venv python3-pip
  libwebkit2gtk-4.1-dev libxdo-dev libayatana-appindicator3-dev librsvg2-dev
  webkit2gtk-driver xvfb
  poppler-utils tesseract-ocr tesseract-ocr-eng tesseract-ocr-deu
  strace
)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing Node.js and npm" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq nodejs npm >/dev/null
fi

if ! command -v cargo >/dev/null; then
  if [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH=$HOME/.cargo/bin:$PATH
  else
    echo "installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
    export PATH=$HOME/.cargo/bin:$PATH
  fi
fi
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt 2>/dev/null || true

if ((want_models)); then
  bash "$root/models/provision.sh"
fi
