#!/usr/bin/env bash
# The system packages the tests need beyond pip: a C++ compiler and Python's venv for the install itself (pip
# compiles llama.cpp), Xvfb and Qt's X client libraries for the real-window screenshot test, and the validators
# for the Linux desktop files. Installs whatever is missing with apt-get
# when this machine allows it (root, or sudo without a password); otherwise says what to install and exits 0,
# so the pip part and the other tests still run, and the tests that need these packages name them when they fail.
# Safe to run again: it does nothing when everything is there.
set -uo pipefail

say() { echo "system-packages: $*" >&2; }

# Command-line tools: "command package".
tools=(
    "Xvfb xvfb"
    "desktop-file-validate desktop-file-utils"
    "appstreamcli appstream"
)
# Qt's xcb platform plugin loads these X client libraries (and fonts to draw with).
libraries=(
    libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
    libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libegl1 libgl1 libfontconfig1
    libdbus-1-3 fonts-dejavu-core
)

missing=()
command -v c++ >/dev/null 2>&1 || missing+=(g++)
# Debian's own python3 leaves venv's pip bootstrap to a separate package; other Pythons bring it along.
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1 && [ "$(command -v python3)" = /usr/bin/python3 ]; then
    missing+=(python3-venv)
fi
for entry in "${tools[@]}"; do
    read -r command package <<<"$entry"
    command -v "$command" >/dev/null 2>&1 || missing+=("$package")
done
if command -v dpkg-query >/dev/null 2>&1; then
    for package in "${libraries[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
    done
fi

if [ "${#missing[@]}" -eq 0 ]; then
    say "all present"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get here; install the equivalents of these Debian packages with your system's package manager:"
    say "  ${missing[*]}"
    say "(without them the screenshot and desktop-file tests fail, saying which one is missing)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    say "missing: ${missing[*]}"
    say "installing them needs root; run once:  sudo bash tests/system-packages.sh"
    say "(without them the screenshot and desktop-file tests fail, saying which one is missing)"
    exit 0
fi

say "installing ${missing[*]}"
# ${as_root[@]+...}: an empty array is "unbound" to `set -u` in bash before 4.4.
if ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    say "done"
else
    say "apt-get could not install ${missing[*]} (see above); the tests that need them will fail saying so"
fi
exit 0
