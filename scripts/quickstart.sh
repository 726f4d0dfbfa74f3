#!/usr/bin/env bash
# From nothing to a first result: installs dependencies, builds fotrt, then runs the main
# job - greedy generation with the golden test model (random weights: the tokens only show
# that the engine runs; see README for real checkpoints).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build/release} scripts/build.sh -DFOT_BUILD_TESTS=OFF -DFOT_BUILD_BENCH=OFF
fotrt=${BUILD_DIR:-build/release}/launch/fotrt
model=tests/data/golden/case_a
echo "quickstart: fotrt inspect --model $model"
"$fotrt" inspect --model "$model"
echo "quickstart: fotrt generate --model $model --ids $model/input_ids.json --max-new-tokens 16 --ignore-eos --json"
"$fotrt" generate --model "$model" --ids "$model/input_ids.json" --max-new-tokens 16 --ignore-eos --json
