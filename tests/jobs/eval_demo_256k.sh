# [F12] slow test: the demo model answers passkey prompts of 256k tokens with --mp 4 and top-k
# (k = 32), accuracy >= 95% (3 prompts: depths 0, 0.5, 1). The memory layer's attention is
# quadratic: 759 s on 2 cores (4.4 min per prompt; measured 2026-11-30), almost half of CI's
# budget, so it runs only when FOT_SLOW_TESTS=1 and otherwise reports itself skipped (exit 77).
if [ "${FOT_SLOW_TESTS:-0}" != 1 ]; then
    echo "skipped: set FOT_SLOW_TESTS=1 to run the 256k eval (about 13 minutes on 2 CPU cores)"
    exit 77
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
timeout 120 "$FOTRT" make-demo-model --out "$T/demo" >/dev/null
timeout 10000 "$MPIEXEC" -np 4 --oversubscribe -x OMP_NUM_THREADS=1 "$FOTRT" eval \
    --model "$T/demo" --threads 1 --mp 4 --retrieval topk --k 32 --task passkey --lengths 256k \
    --depths 0,0.5,1 --trials 1 --json >"$T/256k.json"
check json "$T/256k.json" "j['accuracy'] >= 0.95 and sum(c['trials'] for c in j['cells']) == 3"
echo "eval_demo_256k: ok"
