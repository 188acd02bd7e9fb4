#!/usr/bin/env bash
# Installs Mesa's software GPU drivers (lavapipe for Vulkan, llvmpipe for GL/EGL) at version 25 or newer.
# Debian bookworm ships Mesa 22.3, whose lavapipe runs compute shaders about 4x slower; bookworm-backports has 25.x.
# The backports entry is derived from the machine's own apt sources, so it uses whatever mirror is configured.
# Idempotent: does nothing when a new-enough lavapipe is already installed.
set -euo pipefail

min_major=25
quiet() { "$@" >/dev/null 2>&1; }

installed_mesa_major() {
    dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/' || true
}

have_new_enough() {
    local major
    major=$(installed_mesa_major)
    [[ -n "$major" && "$major" -ge "$min_major" ]] && dpkg-query -W -f='${Status}' libegl-mesa0 2>/dev/null | grep -q "ok installed"
}

if have_new_enough; then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    sudo=sudo
else
    sudo=
fi

. /etc/os-release
codename=${VERSION_CODENAME:-}
if [[ -z "$codename" ]]; then
    echo "setup-software-gpu: cannot tell the Debian release; install mesa-vulkan-drivers >= $min_major by hand" >&2
    exit 1
fi

# Find the URI that serves the main suite of this release, in deb822 (.sources) or one-line (.list) format.
find_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        awk -v want="$codename" '
            BEGIN { RS=""; FS="\n" }
            {
                uri=""; suites=""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); uri=$i }
                    if ($i ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", $i); suites=" " $i " " }
                }
                if (uri != "" && index(suites, " " want " ") > 0) { split(uri, u, " "); print u[1]; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        awk -v want="$codename" '$1 == "deb" && $0 !~ /security/ {
                n = 2; if ($2 ~ /^\[/) { while ($n !~ /\]$/) n++; n++ }
                if ($(n+1) == want) { print $n; exit }
            }' "$f"
    done
}

mirror=$(find_mirror | head -n 1)
if [[ -z "$mirror" ]]; then
    echo "setup-software-gpu: no apt source for '$codename' found to derive a backports entry from" >&2
    exit 1
fi

backports_list=/etc/apt/sources.list.d/atrous-backports.list
if [[ "$codename" == "bookworm" ]] && ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb $mirror ${codename}-backports main" | $sudo tee "$backports_list" >/dev/null
fi

export DEBIAN_FRONTEND=noninteractive
quiet $sudo apt-get update -q
packages=(mesa-vulkan-drivers libvulkan1 libegl-mesa0 libegl1 libgl1-mesa-dri libgles2 vulkan-tools)
if [[ "$codename" == "bookworm" ]]; then
    quiet $sudo apt-get install -y -q -t "${codename}-backports" "${packages[@]}" ||
        $sudo apt-get install -y -q -t "${codename}-backports" "${packages[@]}"
else
    quiet $sudo apt-get install -y -q "${packages[@]}" || $sudo apt-get install -y -q "${packages[@]}"
fi

if ! have_new_enough; then
    echo "setup-software-gpu: installed Mesa $(installed_mesa_major), wanted >= $min_major" >&2
    exit 1
fi
