#!/usr/bin/env bash
# Builds the desktop app's Debian package and checks that it installs and
# starts.
#
#   scripts/deb.sh              build the release .deb, install it with apt
#                               (which pulls the runtime packages it declares)
#                               and start the installed app under Xvfb with an
#                               empty data dir, saving a screenshot
#   scripts/deb.sh --build-only only build it
#
# The package lands in $CARGO_TARGET_DIR/release/bundle/deb/. The check's
# screenshot goes to $LECTERN_DEB_OUT (default: a fresh temporary folder).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
install=1
for a in "$@"; do
  case $a in
    --build-only) install=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh
source scripts/env.sh
npm --prefix ui ci --no-audit --no-fund --loglevel=error
ui/node_modules/.bin/tauri build --bundles deb
deb=$(ls -t "$CARGO_TARGET_DIR"/release/bundle/deb/*.deb | head -n1)
echo "built $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --field "$deb" Package Version Depends Installed-Size
((install)) || exit 0

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
dpkg-query -W -f='${Status}' imagemagick 2>/dev/null | grep -q "install ok installed" ||
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq imagemagick >/dev/null
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --reinstall "$deb" >/dev/null
package=$(dpkg-deb --field "$deb" Package)
bin=$(dpkg -L "$package" | grep -E '^/usr/bin/' | head -n1)
echo "installed $package: $bin"

out=${LECTERN_DEB_OUT:-$(mktemp -d -t lectern-deb-XXXXXX)}
data=$(mktemp -d -t lectern-deb-data-XXXXXX)
log=$out/app.log
app_pid=
cleanup() {
  [[ -n $app_pid ]] && kill "$app_pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

# The installed app, not the build tree: empty data dir, no test models.
LECTERN_DATA_DIR=$data xvfb-run -a -s "-screen 0 1280x800x24" \
  bash -c "\"$bin\" & pid=\$!; sleep 20; import -window root \"$out/deb-app.png\"; \
           kill -0 \$pid && echo alive; kill \$pid; wait \$pid 2>/dev/null || true" \
  >"$log" 2>&1 &
app_pid=$!
wait "$app_pid" || true
app_pid=
if ! grep -q '^alive$' "$log"; then
  echo "the installed app did not stay up; its log:" >&2
  cat "$log" >&2
  exit 1
fi
echo "the installed app started and stayed up; screenshot $out/deb-app.png"
