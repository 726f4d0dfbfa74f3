#!/usr/bin/env bash
# `cmake --install` into a temporary prefix puts an executable fotrt in PREFIX/bin that runs
# from PATH (docs: README "Install"). Arguments: the build directory.
set -euo pipefail
build=$1
prefix=$(mktemp -d "${TMPDIR:-/tmp}/fot_install_XXXXXX")
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >"$prefix.log" 2>&1 || {
    cat "$prefix.log" >&2
    rm -f "$prefix.log"
    echo "FAILED: cmake --install" >&2
    exit 1
}
rm -f "$prefix.log"
[ -x "$prefix/bin/fotrt" ] || { echo "FAILED: no executable $prefix/bin/fotrt" >&2; exit 1; }
[ -x "$prefix/bin/fotrt-mpirun-local" ] || { echo "FAILED: no fotrt-mpirun-local" >&2; exit 1; }
out=$(cd / && PATH="$prefix/bin:$PATH" fotrt --help)
case "$out" in
*"usage: fotrt <command>"*"tokenize"*) ;;
*) echo "FAILED: installed fotrt --help printed: $out" >&2; exit 1 ;;
esac
[ "$(PATH="$prefix/bin:$PATH" command -v fotrt)" = "$prefix/bin/fotrt" ] ||
    { echo "FAILED: fotrt is not found on PATH from the prefix" >&2; exit 1; }
PATH="$prefix/bin:$PATH" fotrt logits --help | grep -F -- "--quiet" >/dev/null ||
    { echo "FAILED: installed fotrt logits --help" >&2; exit 1; }
echo "install OK: $prefix/bin/fotrt"
