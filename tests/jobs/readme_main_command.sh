# [F12] The README's main command, taken from README.md itself so the two cannot drift: the
# ```sh block after "The quickstart's main command" runs as written (fotrt -> this build's
# binary; mpirun -> $MPIEXEC --oversubscribe, one OpenMP thread per rank, as on CI's 2 cores)
# and must print exactly the table the README shows after it (seed 0: the output is
# deterministic). scripts/quickstart.sh must run the same eval. About 2 minutes on 2 cores:
# three 64k-token prompts over dense memory split across 2 ranks.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
readme="$(dirname "${BASH_SOURCE[0]}")/../../README.md"
quickstart="$(dirname "${BASH_SOURCE[0]}")/../../scripts/quickstart.sh"

# The first two fenced blocks after the marker: the commands and the output they print.
"$PYTHON" - "$readme" "$T" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
at = text.find("The quickstart's main command")
assert at >= 0, "README.md lost the main-command paragraph"
blocks = re.findall(r"```(\w*)\n(.*?)```", text[at:], re.S)
assert len(blocks) >= 2 and blocks[0][0] == "sh", "README.md: no ```sh block after the marker"
open(sys.argv[2] + "/commands", "w").write(blocks[0][1])
open(sys.argv[2] + "/expected", "w").write(blocks[1][1])
PY
[ "$(wc -l <"$T/commands")" -ge 2 ] || fail "README main command block has fewer than 2 lines"

cd "$T"
while IFS= read -r line; do
    [ -z "$line" ] && continue
    read -r -a words <<<"$line"
    case "${words[0]}" in
        fotrt) cmd=("$FOTRT" "${words[@]:1}") ;;
        mpirun)
            rest=("${words[@]:1}")
            # "mpirun -np N fotrt ARGS": the binary is this build's
            [ "${rest[0]}" = -np ] && [ "${rest[2]}" = fotrt ] || fail "unexpected README line: $line"
            cmd=("$MPIEXEC" -np "${rest[1]}" --oversubscribe -x OMP_NUM_THREADS=1 "$FOTRT"
                "${rest[@]:3}")
            ;;
        *) fail "README main command line does not start with fotrt or mpirun: $line" ;;
    esac
    # stdout of the last command (the eval) is what the README shows
    timeout 900 "${cmd[@]}" >"$T/out" 2>"$T/err" || {
        cat "$T/err" >&2
        fail "README command failed: $line"
    }
done <"$T/commands"

# The table (the eval's stdout) must be the README's, line for line (trailing spaces aside).
if ! diff <(sed 's/[[:space:]]*$//' "$T/expected") <(sed 's/[[:space:]]*$//' "$T/out"); then
    fail "the README's main command printed a different table (diff above: README < run >)"
fi

# The quickstart runs the same eval (it adds --threads 1 and the kv task).
eval_args=$(grep -o 'eval --model demo --mp 2 .*' "$T/commands" | sed 's/eval --model demo --mp 2 //')
grep -qF -- "$eval_args" "$quickstart" || fail "scripts/quickstart.sh does not run: $eval_args"
echo "readme_main_command: ok"
