#!/usr/bin/env bash
# Creates benches/compare/.venv with CPU PyTorch + transformers + gguf + peft for torch_bench.py.
#
#   bash benches/compare/setup.sh            # idempotent: returns at once when the venv is complete
#   FORCE=1 bash benches/compare/setup.sh    # delete and rebuild the venv
#
# Environment: PYTHON (default python3, must be >= 3.11), KEEP_PIP_CACHE=1 to let pip keep the
# ~2.6 GB of downloaded wheels in its cache (default: --no-cache-dir).
#
# Everything comes from PyPI with exact pins (requirements.txt) and --no-deps, so the ~1 GB of
# packages that the torch wheel declares but CPU use never loads (triton, cuda-bindings, ...) is
# not installed. The nvidia-* CUDA runtime wheels cannot be left out: see requirements.txt.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
REQ="$HERE/requirements.txt"
MARKER="$VENV/.setup-complete"
PYTHON="${PYTHON:-python3}"

say() { printf '[compare/setup] %s\n' "$*" >&2; }
die() { printf '[compare/setup] ERROR: %s\n' "$*" >&2; exit 1; }

[ -f "$REQ" ] || die "missing $REQ"
REQ_SUM="$(sha256sum "$REQ" | cut -d' ' -f1)"

# The check that decides "complete": imports, versions and a matmul, with no GPU.
verify() {
    "$VENV/bin/python" - <<'EOF'
import sys, time
import torch, transformers, gguf, peft, accelerate, tokenizers  # noqa: F401
from importlib.metadata import version
want = {"torch": "2.15.0", "transformers": "5.23.0", "gguf": "0.19.0", "peft": "0.21.2"}
got = {k: version(k) for k in want}
bad = {k: (got[k], v) for k, v in want.items() if got[k] != v}
if bad:
    sys.exit(f"version mismatch (got, want): {bad}")
torch.manual_seed(0)
a = torch.randn(512, 512)
t = time.perf_counter()
c = a @ a
dt = time.perf_counter() - t
ref = (a.double() @ a.double()).float()
if not torch.allclose(c, ref, rtol=1e-4, atol=1e-3):
    sys.exit("matmul result is wrong")
print(f"  torch {torch.__version__} (cuda available: {torch.cuda.is_available()}, "
      f"{torch.get_num_threads()} threads, 512x512 matmul {dt*1e3:.1f} ms), "
      f"transformers {transformers.__version__}, gguf {got['gguf']}, peft {peft.__version__}",
      file=sys.stderr)
EOF
}

if [ "${FORCE:-0}" = "1" ] && [ -d "$VENV" ]; then
    say "FORCE=1: removing $VENV"
    rm -rf "$VENV"
fi

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$REQ_SUM" ] && [ -x "$VENV/bin/python" ]; then
    say "venv already complete at $VENV; verifying..."
    if verify; then
        say "ok, nothing to do"
        exit 0
    fi
    say "verification failed; repairing the venv"
    rm -f "$MARKER"
fi

START=$(date +%s)

# 1. Python
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON=/path/to/python3.11+)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "$("$PYTHON" -V 2>&1) is too old: torch 2.15 needs Python >= 3.11"
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$PYVER" = "3.11" ] || say "warning: the pins were verified on Python 3.11, this is $PYVER"
[ "$(uname -sm)" = "Linux x86_64" ] || say "warning: the pins were verified on Linux x86_64, this is $(uname -sm)"

# 2. Disk: the venv is ~4.6 GB and pip unpacks ~2.6 GB of wheels on the side while installing.
FREE_KB="$(df -Pk "$HERE" | awk 'NR==2 {print $4}')"
if [ -n "$FREE_KB" ] && [ "$FREE_KB" -lt $((8 * 1024 * 1024)) ]; then
    say "warning: only $((FREE_KB / 1024)) MB free under $HERE; the install needs about 8 GB while running"
fi

# 3. venv (reused if its interpreter works, rebuilt otherwise)
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1; then
    say "[1/3] reusing the existing venv at $VENV"
else
    rm -rf "$VENV"
    say "[1/3] creating venv at $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi

# 4. packages
PIP_FLAGS=(--disable-pip-version-check --no-deps --only-binary=:all: --no-input)
[ "${KEEP_PIP_CACHE:-0}" = "1" ] || PIP_FLAGS+=(--no-cache-dir)
say "[2/3] installing $(grep -c '^[A-Za-z]' "$REQ") pinned packages from PyPI (~2.6 GB download, ~4.6 GB installed);"
say "      the big ones: torch 2.15.0 (539 MB), nvidia-cublas, nvidia-cudnn-cu13, nvidia-cufft, nvidia-nccl-cu13, ..."
"$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" -r "$REQ" \
    || die "pip install failed (is PyPI reachable? rerun this script to resume)"

# 5. verify
say "[3/3] verifying (import torch/transformers/gguf/peft, CPU matmul)"
verify || die "verification failed"
echo "$REQ_SUM" > "$MARKER"

END=$(date +%s)
say "done in $((END - START)) s; venv size: $(du -sh "$VENV" | cut -f1)"
say "run: $VENV/bin/python $HERE/torch_bench.py --model PATH/TO/model.gguf --threads 2"
