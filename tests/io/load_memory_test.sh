#!/usr/bin/env bash
# io_load_memory_test ([F14]): generated checkpoints of ~200 MB, f32 and bf16, safetensors
# (one file, sharded, unaligned = copied) and sharded .bin, each loaded in a fresh process
# by fot_load_bench, which runs a short prompt and exits 1 when the peak RSS growth exceeds
# 1.3x the weight bytes. Also the CI run of the load benchmark: it prints GB/s and peak RSS.
# usage: load_memory_test.sh FOT_LOAD_BENCH
set -euo pipefail
bench=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fot_load_memory_XXXXXX")
trap 'rm -rf "$tmp"' EXIT
run() {  # name, generate options..., -- load options...
    local name=$1
    shift
    local gen=() load=()
    while [[ $# -gt 0 && $1 != -- ]]; do gen+=("$1"); shift; done
    [[ $# -gt 0 ]] && shift
    load=("$@")
    "$bench" generate --dir "$tmp/$name" --size-mb 200 "${gen[@]}"
    "$bench" load --dir "$tmp/$name" --max-rss-ratio 1.3 "${load[@]}"
    rm -rf "${tmp:?}/$name"
}
run st_f32 --dtype f32 --format safetensors
run st_bf16_sharded --dtype bf16 --format safetensors --shard-mb 80
run st_f32_unaligned --dtype f32 --format safetensors --unaligned
run bin_f32_sharded --dtype f32 --format bin
run bin_bf16_sharded --dtype bf16 --format bin -- --copy
echo "load_memory_test: all loads within 1.3x the weight bytes"
