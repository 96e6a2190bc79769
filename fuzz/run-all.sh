#!/usr/bin/env bash
# Builds the fuzz targets, then runs each in turn, one process each, for SECONDS (default 300) or until it
# finds a crash:
#   fuzz/run-all.sh [SECONDS] [TARGET...]
# FUZZ_BIN=<folder> runs binaries built earlier (copied away) instead of building.
# New inputs grow fuzz/corpus/<target>/ (git-ignored); crashes land in fuzz/artifacts/<target>/; each run's
# log, ending in libFuzzer's final stats (executions, cov, ft), is fuzz/logs/<target>-<time>.log.
set -u
cd "$(dirname "$0")"
secs=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(gguf safetensors hf_config tokenizer_json chat_template jsonl dataset peft_adapter serve_request)
mkdir -p logs
bin=${FUZZ_BIN:-target/x86_64-unknown-linux-gnu/release}
[ -n "${FUZZ_BIN:-}" ] || nice cargo fuzz build -s none -O || exit 1
for t in "${targets[@]}"; do
    # Inputs large enough for every seed (the biggest, a GGUF with a vocabulary, is ~15 KB).
    case $t in
        gguf | tokenizer_json) max_len=20000 ;;
        *) max_len=4096 ;;
    esac
    mkdir -p "corpus/$t" "artifacts/$t"
    log="logs/$t-$(date +%H%M%S).log"
    # RAYON_NUM_THREADS=1: the tensor decoders use rayon; one thread keeps the run on one core.
    # (What `cargo fuzz run -s none -O $t corpus/$t seeds/$t -- <options>` runs.)
    RAYON_NUM_THREADS=1 nice "$bin/$t" -artifact_prefix="artifacts/$t/" "corpus/$t" "seeds/$t" \
        -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 > "$log" 2>&1
    echo "$t: exit $?; $(grep -E "^#[0-9]+.*(DONE|cov)" "$log" | tail -1)"
done
