#!/usr/bin/env bash
# Sums libFuzzer's final stats over every run logged in fuzz/logs/: executions per target, and the coverage
# (cov: edges, ft: features) of its last run, which starts from the corpus all earlier runs grew.
cd "$(dirname "$0")"
total=0
printf "%-16s %12s %8s %8s %6s\n" target executions cov ft runs
for t in gguf safetensors hf_config tokenizer_json chat_template jsonl dataset peft_adapter serve_request; do
    execs=0
    runs=0
    for log in logs/$t-*.log; do
        [ -e "$log" ] || continue
        n=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
        # A run stopped by a crash prints no stats; its last status line has the count.
        [ -n "$n" ] || n=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
        execs=$((execs + ${n:-0}))
        runs=$((runs + 1))
    done
    last=$(ls logs/$t-*.log 2>/dev/null | sort | tail -1)
    line=$(grep -E '^#[0-9]+.*cov:' "$last" | tail -1)
    cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<< "$line")
    ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<< "$line")
    printf "%-16s %12d %8s %8s %6d\n" "$t" "$execs" "$cov" "$ft" "$runs"
    total=$((total + execs))
done
echo "total executions: $total"
