#!/usr/bin/env bash
# Runs fotrt (or any command) on N ranks of this machine with Open MPI's mpirun.
#
#   launch/mpirun_local.sh -np 4 build/release/launch/fotrt logits --model M --ids doc.json \
#       --out doc.f32 --tp 2 --mp 2
#
# Adds --oversubscribe (more ranks than cores is fine for testing; each rank should then use
# fewer threads, e.g. --threads 1) and, when run as root (containers, CI), the flags Open MPI
# needs to accept that. Every other argument is passed to mpirun unchanged. Set MPIRUN to use
# another mpirun binary.
set -euo pipefail

mpirun_bin="${MPIRUN:-mpirun}"
if ! command -v "$mpirun_bin" >/dev/null 2>&1; then
    echo "mpirun_local.sh: '$mpirun_bin' not found; install Open MPI (apt-get install openmpi-bin) or set MPIRUN" >&2
    exit 2
fi
if [ "$#" -eq 0 ]; then
    echo "usage: $0 -np N COMMAND [ARGS...]   (extra mpirun options go before COMMAND)" >&2
    exit 2
fi

extra=(--oversubscribe)
if [ "$(id -u)" -eq 0 ]; then
    extra+=(--allow-run-as-root)
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
exec "$mpirun_bin" "${extra[@]}" "$@"
