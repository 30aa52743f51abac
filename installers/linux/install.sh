#!/bin/sh
# Installs LlamaDesk for the current user from the unpacked archive: the bundle into ~/.local/lib/llamadesk,
# a "llamadesk" command into ~/.local/bin, and the menu entry, AppStream metadata and icons into ~/.local/share.
#
#   ./install.sh                          install into ~/.local
#   ./install.sh --prefix /opt/llamadesk  install elsewhere (the menu entry points there); PREFIX=... does the same
#   DESTDIR=/tmp/stage ./install.sh       stage the files for a package: written under DESTDIR, referring to PREFIX,
#                                         where they will live once packaged
#
# Every file and folder it creates is listed in lib/llamadesk/install-manifest.txt, so uninstall.sh removes
# exactly those and leaves anything that was there before.
set -eu

app_id=@APP_ID@
here=$(cd "$(dirname "$0")" && pwd)

case "${1:-}" in
    --prefix) PREFIX=$2 ;;
    --prefix=*) PREFIX=${1#--prefix=} ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    "") ;;
    *) echo "install.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
esac
prefix=${PREFIX:-$HOME/.local}
case "$prefix" in
    /*) ;;
    *) echo "install.sh: PREFIX must be an absolute path, not '$prefix'." >&2; exit 2 ;;
esac
root=${DESTDIR:-}$prefix
app_dir=$root/lib/llamadesk

if [ ! -x "$here/@BUNDLE_DIR@/llamadesk" ]; then
    echo "install.sh: run me from the unpacked archive; @BUNDLE_DIR@/llamadesk is missing next to me." >&2
    exit 1
fi

# Installing over an earlier version: remove it first, so files it had and this one lacks do not linger.
if [ -f "$app_dir/install-manifest.txt" ]; then
    sh "$app_dir/uninstall.sh"
fi

manifest=$(mktemp)
trap 'rm -f "$manifest"' EXIT

# Create a folder and its missing parents, recording each one created (parents first).
make_dir() {
    missing=""
    dir=$1
    while [ ! -d "$dir" ]; do
        missing="$dir
$missing"
        dir=$(dirname "$dir")
    done
    printf '%s' "$missing" | while IFS= read -r dir; do
        [ -n "$dir" ] || continue
        mkdir "$dir"
        # The prefix itself (and anything above it) is a place, not part of the app: never listed for removal.
        case "$dir" in
            "$root"/*) echo "dir ${dir#"$root"/}" >>"$manifest" ;;
        esac
    done
}

# Copy one file into place, recording it.
put_file() {
    make_dir "$(dirname "$2")"
    cp "$1" "$2"
    chmod 644 "$2"
    echo "file ${2#"$root"/}" >>"$manifest"
}

if [ -e "$app_dir" ]; then
    echo "install.sh: $app_dir already exists and was not installed by this script; move it away first." >&2
    exit 1
fi
make_dir "$(dirname "$app_dir")"
cp -RP "$here/@BUNDLE_DIR@" "$app_dir"
echo "tree ${app_dir#"$root"/}" >>"$manifest"
cp "$here/uninstall.sh" "$app_dir/uninstall.sh"

make_dir "$root/bin"
if [ -e "$root/bin/llamadesk" ] || [ -L "$root/bin/llamadesk" ]; then
    echo "install.sh: leaving the existing $root/bin/llamadesk alone; the bundle's command is $prefix/lib/llamadesk/llamadesk." >&2
else
    ln -s ../lib/llamadesk/llamadesk "$root/bin/llamadesk"
    echo "file bin/llamadesk" >>"$manifest"
fi

# The menu entry must name the executable by its absolute path: a desktop session's PATH often lacks ~/.local/bin.
# Inside a quoted Exec argument, " ` $ and \ are escaped with a backslash (Desktop Entry spec); then the result is
# escaped once more for sed's replacement text.
exec_path=$(printf '%s' "$prefix/lib/llamadesk/llamadesk" | sed 's/[\\"`$]/\\&/g')
exec_line=$(printf 'Exec="%s"' "$exec_path" | sed 's/[\\|&]/\\&/g')
desktop_file=$root/share/applications/$app_id.desktop
make_dir "$(dirname "$desktop_file")"
sed "s|^Exec=.*|$exec_line|" "$here/share/applications/$app_id.desktop" >"$desktop_file"
chmod 644 "$desktop_file"
echo "file ${desktop_file#"$root"/}" >>"$manifest"

put_file "$here/share/metainfo/$app_id.metainfo.xml" "$root/share/metainfo/$app_id.metainfo.xml"
for icon in "$here"/share/icons/hicolor/*/apps/"$app_id".*; do
    put_file "$icon" "$root/${icon#"$here"/}"
done

cp "$manifest" "$app_dir/install-manifest.txt"
echo "Installed @APP_NAME@ @VERSION@ into $prefix. Start it from your applications menu, or run $prefix/bin/llamadesk."
echo "To remove it: $prefix/lib/llamadesk/uninstall.sh"
