#!/usr/bin/env bash
# Makes `--features cuda` build without downloading LLVM from GitHub.
#
# burn-cuda -> cubecl-cuda -> cubecl-llvm (always, features std + nvptx), whose build script uses
# tracel-llvm-bundler. That crate's own build script downloads a prebuilt LLVM 23.1 from GitHub releases
# into $XDG_DATA_HOME/tracel/tracel-llvm-<version>/ (default ~/.local/share/...) unless the file
# `.tracel-llvm-installed` already exists there; after that it only runs `<dir>/bin/llvm-config --link-static ...`.
#
# This script fills that directory from PyPI instead: the wheels `mlc-llvm-static` and
# `mlc-llvm-static-extra-targets` (LLVM 23.1.1: static libraries of every standard backend incl. NVPTX,
# headers, and a Python `llvm-config`), installed into a venv next to it, linked in, and marked installed.
#
# Needs: python3 (>= 3.10) with venv and pip, network access to PyPI, and a C/C++ compiler (g++) for the
# cubecl-llvm shims. Usage: bash scripts/setup-cuda-llvm.sh   (idempotent; run once per machine/user)
set -euo pipefail

SDK_VERSION="23.1.1.post0"
# The directory name tracel-llvm-bundler 23.1.0-4 expects (config::llvm_path); keep in step with Cargo.lock.
BUNDLE="tracel-llvm-23.1.0-4"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -f "$ROOT/Cargo.lock" ] && ! grep -A1 'name = "tracel-llvm-bundler"' "$ROOT/Cargo.lock" | grep -q 'version = "23.1.0-4"'; then
    echo "setup-cuda-llvm: Cargo.lock no longer has tracel-llvm-bundler 23.1.0-4; update BUNDLE/SDK_VERSION in $0" >&2
    exit 1
fi

BASE="${XDG_DATA_HOME:-$HOME/.local/share}/tracel"
DEST="$BASE/$BUNDLE"
VENV="$BASE/mlc-llvm-static-$SDK_VERSION"
MARK=".engram-mlc-llvm-static"

if [ -e "$DEST/.tracel-llvm-installed" ] && [ ! -e "$DEST/$MARK" ]; then
    echo "setup-cuda-llvm: $DEST already holds an LLVM bundle (not made by this script); leaving it." >&2
    exit 0
fi

mkdir -p "$BASE"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "mlc-llvm-static==$SDK_VERSION" "mlc-llvm-static-extra-targets==$SDK_VERSION"
PREFIX="$("$VENV/bin/python" -m mlc_llvm_static.config --prefix)"

rm -rf "$DEST"
mkdir -p "$DEST"
for d in bin include lib share; do
    ln -s "$PREFIX/$d" "$DEST/$d"
done

version="$("$DEST/bin/llvm-config" --version)"
targets="$("$DEST/bin/llvm-config" --targets-built)"
case "$version" in 23.1.*) ;; *) echo "setup-cuda-llvm: unexpected LLVM version $version" >&2; exit 1 ;; esac
case " $targets " in *" NVPTX "*) ;; *) echo "setup-cuda-llvm: NVPTX backend missing ($targets)" >&2; exit 1 ;; esac

echo "mlc-llvm-static $SDK_VERSION at $PREFIX" > "$DEST/$MARK"
touch "$DEST/.tracel-llvm-installed"
echo "setup-cuda-llvm: LLVM $version (targets: $targets)"
echo "setup-cuda-llvm: $DEST -> $PREFIX"
