# Shared by the jobs CLI tests (sourced). Environment from tests/jobs/CMakeLists.txt: FOTRT,
# MPIEXEC, PYTHON, GOLDEN, CHECK. Every command runs under a timeout so a hang fails the test.
set -euo pipefail
T=$(mktemp -d "${TMPDIR:-/tmp}/fot_jobs_XXXXXX")
trap 'rm -rf "$T"' EXIT

check() { "$PYTHON" "$CHECK" "$@"; }
fot() { timeout 60 "$FOTRT" "$@" --threads 1 --progress-interval 0; }
fot_plain() { timeout 60 "$FOTRT" "$@" --threads 1; }
mpi() {
    local np=$1
    shift
    timeout 120 "$MPIEXEC" -np "$np" --oversubscribe -x OMP_NUM_THREADS=1 "$FOTRT" "$@" \
        --threads 1
}
fail() {
    echo "FAILED: $*" >&2
    exit 1
}
# expect_rc RC CMD...: runs CMD (output to $T/last.out / $T/last.err) and checks its status.
expect_rc() {
    local want=$1
    shift
    local rc=0
    "$@" >"$T/last.out" 2>"$T/last.err" || rc=$?
    if [ "$rc" != "$want" ]; then
        echo "--- stdout" >&2
        cat "$T/last.out" >&2
        echo "--- stderr" >&2
        cat "$T/last.err" >&2
        fail "exit code $rc, expected $want: $*"
    fi
}
# expect_error TEXT CMD...: CMD fails with exit code 1 and one error line holding TEXT.
expect_error() {
    local text=$1
    shift
    expect_rc 1 "$@"
    grep -F -- "$text" "$T/last.err" >/dev/null || {
        cat "$T/last.err" >&2
        fail "stderr lacks '$text': $*"
    }
    [ "$(grep -c 'error:' "$T/last.err")" = 1 ] || {
        cat "$T/last.err" >&2
        fail "expected exactly one error line: $*"
    }
}
