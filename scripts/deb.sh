#!/usr/bin/env bash
# Builds the desktop app's Debian package and checks that it installs and
# starts on a clean Debian 12.
#
#   scripts/deb.sh               build the release app (and the `lectern` CLI
#                                beside it), bundle the .deb, then check it
#   scripts/deb.sh --build-only  only build it
#   scripts/deb.sh --no-build    check the newest .deb already built
#   scripts/deb.sh --host        install it on this machine instead of in a
#                                clean Debian 12 root
#
# The check: a minimal Debian 12 root (debootstrap's minbase, kept as a
# pristine copy under ~/.cache/lectern/debian12-base and copied fresh for
# every run) gets the .deb with `apt-get install --no-install-recommends`, so
# only the runtime packages the package declares come with it. The installed
# /usr/bin/lectern-app then starts in that root on an empty data folder,
# drawing on an Xvfb display of this machine, and must stay up and show its
# window; a screenshot and the app's log go to $LECTERN_DEB_OUT (default: a
# fresh temporary folder). Needs root (chroot, mounts) and the network to
# Debian's mirror for the first base root and the runtime packages.
#
# The package lands in $CARGO_TARGET_DIR/release/bundle/deb/; LECTERN_DEB
# names another one to check.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=1
check=1
where=clean
for a in "$@"; do
  case $a in
    --build-only) check=0 ;;
    --no-build) build=0 ;;
    --host) where=host ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
fail() { echo "deb: $*" >&2; exit 1; }

bash scripts/setup.sh
source scripts/env.sh
if ((build)); then
  npm --prefix ui ci --no-audit --no-fund --loglevel=error
  npm --prefix ui run build --silent
  # One release build for the app (serving the built UI) and the CLI, then
  # the bundler packs the app's binary.
  cargo build --release --locked -p lectern-app -p lectern-cli --features tauri/custom-protocol
  ui/node_modules/.bin/tauri bundle --bundles deb --features tauri/custom-protocol
fi
deb=${LECTERN_DEB:-$(ls -t "$CARGO_TARGET_DIR"/release/bundle/deb/*.deb 2>/dev/null | head -n1 || true)}
[[ -n $deb ]] || fail "no .deb in $CARGO_TARGET_DIR/release/bundle/deb (run without --no-build)"
echo "package $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --field "$deb" Package Version Depends Installed-Size
((check)) || exit 0

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) ||
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}
apt_install imagemagick xvfb x11-utils
package=$(dpkg-deb --field "$deb" Package)
out=${LECTERN_DEB_OUT:-$(mktemp -d -t lectern-deb-XXXXXX)}
mkdir -p "$out"
log=$out/app.log
display=:$((90 + RANDOM % 100))
app_pid=
xvfb_pid=
data=
croot=
mounts=()
cleanup() {
  [[ -n $app_pid ]] && { kill -- -"$app_pid" 2>/dev/null || kill "$app_pid" 2>/dev/null || true; }
  [[ -n $xvfb_pid ]] && kill "$xvfb_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -R -l "${mounts[i]}" 2>/dev/null || true; done
  [[ -n $croot ]] && rm -rf --one-file-system "$croot"
  [[ -n $data ]] && rm -rf "$data"
  return 0
}
trap cleanup EXIT

if [[ $where == host ]]; then
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --reinstall "$deb" >/dev/null
  bin=$(dpkg -L "$package" | grep -E '^/usr/bin/' | head -n1)
  data=$(mktemp -d -t lectern-deb-data-XXXXXX)
  app=(env DISPLAY="$display" LECTERN_DATA_DIR="$data" "$bin")
else
  [[ $(id -u) -eq 0 ]] || fail "the clean-root check needs root (chroot and mounts); try --host"
  apt_install debootstrap
  base=$HOME/.cache/lectern/debian12-base
  if [[ ! -x $base/usr/bin/apt-get ]]; then
    echo "making a minimal Debian 12 root in $base (once)"
    rm -rf "$base.tmp"
    debootstrap --variant=minbase bookworm "$base.tmp" http://deb.debian.org/debian >"$out/debootstrap.log" 2>&1 ||
      fail "debootstrap failed; see $out/debootstrap.log"
    mv "$base.tmp" "$base"
  fi
  croot=$(mktemp -d -t lectern-debian12-XXXXXX)
  cp -a "$base/." "$croot/"
  # Recursive binds made slaves, so nothing mounted or unmounted in the root
  # reaches this machine's /dev or /sys.
  mkdir -p /tmp/.X11-unix "$croot/tmp/.X11-unix"
  mount -t proc proc "$croot/proc" && mounts+=("$croot/proc")
  for m in sys dev; do
    mount --rbind "/$m" "$croot/$m" && mounts+=("$croot/$m")
    mount --make-rslave "$croot/$m"
  done
  mount --bind /tmp/.X11-unix "$croot/tmp/.X11-unix" && mounts+=("$croot/tmp/.X11-unix")
  cp /etc/resolv.conf "$croot/etc/resolv.conf"
  cp "$deb" "$croot/tmp/$(basename "$deb")"
  in_root() { chroot "$croot" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
  echo "installing $(basename "$deb") into a clean Debian 12 root ($croot)"
  pkgs_before=$(in_root dpkg-query -W -f='.\n' | wc -l)
  in_root apt-get update -qq >"$out/apt.log" 2>&1 || { fail "apt-get update failed; see $out/apt.log"; }
  DEBIAN_FRONTEND=noninteractive in_root apt-get install -y --no-install-recommends \
    "/tmp/$(basename "$deb")" >>"$out/apt.log" 2>&1 || { fail "installing the package failed; see $out/apt.log"; }
  pkgs_after=$(in_root dpkg-query -W -f='.\n' | wc -l)
  echo "installed with $((pkgs_after - pkgs_before - 1)) runtime packages it pulled in (log: $out/apt.log)"
  bin=$(in_root dpkg -L "$package" | grep -E '^/usr/bin/' | head -n1)
  missing=$(in_root ldd "$bin" | grep 'not found' || true)
  [[ -z $missing ]] || { fail "libraries missing in the clean root: $missing"; }
  mkdir -p "$croot/tmp/lectern-data"
  app=(chroot "$croot" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
    DISPLAY="$display" LECTERN_DATA_DIR=/tmp/lectern-data "$bin")
fi

Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >"$out/xvfb.log" 2>&1 &
xvfb_pid=$!
for _ in $(seq 50); do
  xdpyinfo -display "$display" >/dev/null 2>&1 && break
  sleep 0.2
done

# In a session of its own, so that stopping it stops its web processes too.
setsid "${app[@]}" >"$log" 2>&1 &
app_pid=$!
# The window is up once the display has a window titled Lectern.
up=0
for _ in $(seq 120); do
  kill -0 "$app_pid" 2>/dev/null || break
  if xwininfo -display "$display" -root -tree 2>/dev/null | grep -q '"Lectern"'; then up=1; break; fi
  sleep 0.5
done
# Give the web view time to draw, then make sure it is still running.
sleep 8
if ((up == 0)) || ! kill -0 "$app_pid" 2>/dev/null; then
  echo "the installed app did not come up and stay up; its log:" >&2
  cat "$log" >&2
  exit 1
fi
import -display "$display" -window root "$out/deb-app.png"
if grep -qiE 'panicked|segmentation fault|error while loading shared libraries' "$log"; then
  echo "the installed app logged a failure:" >&2
  cat "$log" >&2
  exit 1
fi
echo "the installed app started ($where Debian 12) and stayed up; screenshot $out/deb-app.png"
