#!/usr/bin/env bash
# CI smoke run of every fuzz target (issue 8): each runs for FUZZ_SECONDS (30 by default)
# from its seeds and its regression inputs; a crash fails the script (libFuzzer exits
# non-zero and leaves the input in fuzz/artifacts/<target>/).
#
# Installs cargo-fuzz if missing. Builds with the stable toolchain and no sanitizer (the
# crates forbid unsafe code, so ASan would find little; nightly is not needed), in
# target/fuzz so the build is cached with the repository's other build output.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-30}"
targets=(discovery_responses delta_responses resource_validation rbac_engine spiffe_and_certs route_matching bootstrap)

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

opts=(--sanitizer none --target-dir target/fuzz)
start=$(date +%s)
cargo fuzz build "${opts[@]}"
echo "fuzz: build took $(( $(date +%s) - start )) s"

for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus"
    dirs=("$corpus")
    for extra in "fuzz/seeds/$t" "fuzz/regressions/$t"; do
        if [ -d "$extra" ]; then dirs+=("$extra"); fi
    done
    echo "fuzz: $t for ${seconds} s"
    # The first directory receives new inputs; seeds and regressions are only read.
    log="target/fuzz/$t.log"
    set +e
    cargo fuzz run "${opts[@]}" "$t" "${dirs[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
        >"$log" 2>&1
    status=$?
    set -e
    grep -E '^(Done |stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        echo "fuzz: $t FAILED; reproduce with: cargo fuzz run --sanitizer none $t fuzz/artifacts/$t/<file>" >&2
        exit 1
    fi
done
echo "fuzz: all targets clean in $(( $(date +%s) - start )) s"
