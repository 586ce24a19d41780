#!/usr/bin/env bash
# Makes sure a Vulkan driver is present. On a machine with no GPU driver this installs
# Mesa's software rasteriser lavapipe (package mesa-vulkan-drivers), preferring Debian's
# bookworm-backports (Mesa 25, much faster than bookworm's 22.3) where that suite exists.
set -euo pipefail

has_vulkan_icd() {
    for dir in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
        if compgen -G "$dir/*.json" >/dev/null 2>&1; then
            return 0
        fi
    done
    return 1
}

if has_vulkan_icd; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "No Vulkan driver found and this is not a Debian/Ubuntu machine." >&2
    echo "Install your GPU's Vulkan driver, or Mesa's lavapipe (software Vulkan)." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi

echo "No Vulkan driver found: installing Mesa's software Vulkan driver (lavapipe)..." >&2
codename=""
if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
fi
target=()
if [ "$codename" = "bookworm" ]; then
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" |
            $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    fi
    target=(-t bookworm-backports)
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${target[@]}" mesa-vulkan-drivers libvulkan1 ||
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        mesa-vulkan-drivers libvulkan1
has_vulkan_icd || { echo "Vulkan driver install failed" >&2; exit 1; }
