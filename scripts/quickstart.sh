#!/usr/bin/env bash
# From nothing to a first result: installs dependencies, builds fotrt, writes the demo model
# (weights constructed to retrieve through LongLLaMA's memory layer; docs/demo-model.md) and
# runs the long-context eval suite on 2 memory-parallel ranks: passkey up to 64k tokens and
# key-value retrieval up to 16k, each printing an accuracy table (length x needle depth).
# Measured: 290 CPU-seconds for the two evals (2 ranks x 1 thread; the 64k prompts take most
# of it), so about 2.5 minutes on an idle 2-core machine after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build/release}
BUILD_DIR=$BUILD_DIR scripts/build.sh -DFOT_BUILD_TESTS=OFF -DFOT_BUILD_BENCH=OFF
fotrt=$BUILD_DIR/launch/fotrt
demo=${DEMO_DIR:-$BUILD_DIR/demo-model}
echo "quickstart: fotrt make-demo-model --out $demo"
"$fotrt" make-demo-model --out "$demo"
run() {
    echo "quickstart: mpirun -np 2 fotrt eval --model $demo --mp 2 $*"
    launch/mpirun_local.sh -np 2 "$fotrt" eval --model "$demo" --mp 2 --threads 1 "$@"
}
run --task passkey --lengths 4k,16k,64k --depths 0,0.5,1 --trials 1
run --task kv --lengths 4k,16k --depths 0,0.5,1 --trials 1
