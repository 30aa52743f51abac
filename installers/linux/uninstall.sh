#!/bin/sh
# Removes what install.sh added, as listed in its install-manifest.txt: the bundle, the "llamadesk" command, the
# menu entry, the AppStream metadata, the icons, and the folders install.sh had to create (when left empty).
# Your conversations, settings and models are kept: they live in ~/.config/LlamaDesk, ~/.local/share/LlamaDesk and
# ~/.cache/LlamaDesk; delete those folders too if you want them gone.
#
#   ~/.local/lib/llamadesk/uninstall.sh     the copy install.sh leaves beside the bundle
#   PREFIX=/opt/llamadesk ./uninstall.sh    from the unpacked archive: the same PREFIX and DESTDIR as install.sh
set -eu

here=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in
    --prefix) PREFIX=$2 ;;
    --prefix=*) PREFIX=${1#--prefix=} ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    "") ;;
    *) echo "uninstall.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
esac

if [ -z "${PREFIX:-}" ] && [ -f "$here/install-manifest.txt" ]; then
    app_dir=$here
else
    app_dir=${DESTDIR:-}${PREFIX:-$HOME/.local}/lib/llamadesk
fi
manifest=$app_dir/install-manifest.txt
if [ ! -f "$manifest" ]; then
    echo "uninstall.sh: no installation found ($manifest is missing)." >&2
    exit 1
fi
root=$(cd "$app_dir/../.." && pwd)

# Read the whole list before the bundle (which holds it) goes away.
entries=$(cat "$manifest")

# Files first.
printf '%s\n' "$entries" | while read -r kind path; do
    case "$kind" in
        file) rm -f "$root/$path" ;;
    esac
done

# The bundle folder: only ever the one install.sh made.
printf '%s\n' "$entries" | while read -r kind path; do
    if [ "$kind" = tree ] && [ "$path" = lib/llamadesk ]; then
        rm -rf "${root:?}/lib/llamadesk"
    fi
done

# Folders last, deepest first, each only if nothing else has been put in it since.
printf '%s\n' "$entries" | sed -n 's/^dir //p' | sort -r | while IFS= read -r path; do
    rmdir "$root/$path" 2>/dev/null || true
done

echo "Removed @APP_NAME@ from $root."
