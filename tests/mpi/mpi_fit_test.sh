#!/usr/bin/env bash
# `mpirun -np N d2r fit …` equals the one-process run (DESIGN.md §10, README "Data parallel"), on the
# cpu backend with tiny sizes:
#   1. --deterministic-reduction: 1 process (no launcher), 2 and 3 ranks give the same bits
#      (compare_runs.py, rtol 0) for a regression PG fit, a regression bilevel run, a minibatch
#      regression bilevel run (--inner-batch-size: each window split over the ranks) and a
#      classification bilevel run (BilevelTrainer's categorical problem; its best-judged inner policy as
#      the model, or with --final-model pg then fit_classifier).
#   2. the engine's order (default): within a stated tolerance of the one-process run — float
#      regression NLL fit and classification PG fit: rtol 1e-5; a double bilevel run of one outer
#      step: rtol 1e-6 (its linear solve is capped and ill-conditioned: its residual columns are
#      left out, they move by ~0.5% under a reordered sum even in double); the same for a minibatch
#      bilevel run.
#   3. resume: a 2-rank run checkpointed after 2 outer steps, resumed with 3 ranks to 3 steps,
#      equals the uninterrupted one-process run bit for bit (deterministic mode); the same for a
#      classification bilevel run (1 step on 2 ranks, resumed on 3 to 2) and a minibatch run.
#   4. a failure ends every rank: a bad --out (exit 2, one message, nothing written); one rank
#      killed with SIGKILL mid-run ends the job with a non-zero status within 60 s (no hang).
#   5. `reproduce` and `sweep` on ranks (deterministic mode, same bits for 1, 2, 3 ranks):
#      reproduce tabular --quick on iris (fit_classifier and BilevelTrainer's categorical problem,
#      small blocks so every rank has rows) and a 3-point sweep; rank 0 alone writes; a command
#      that does not train (sample) is refused on several ranks (exit 2).
#   6. memory: each rank holds in the backend's memory only the rows it computes on
#      (D2R_DATA_STATS=1) in a plain fit (fit_policy), a full-batch bilevel regression and
#      classification run (BilevelTrainer's data-parallel constructors) and the classifier's
#      validation and test metrics: one process holds every row; 2 ranks (engine order) N/ranks
#      rows each, 3 ranks (deterministic) their blocks; bytes = rows x (features + targets) x 4
#      (float; labels int32). The classifier's training rows (a plain fit and the --final-model pg
#      phase, --batch-size 40) stay on the host: each rank holds this rank's parts of each epoch's
#      batches or its rows of the set, whichever is more (classifier_rows_held), derived here; a
#      plain classification fit on several ranks uploads no other training rows.
# Usage: mpi_fit_test.sh D2R MPIEXEC DATA_DIR WORK_DIR
set -u
D2R=$1 MPIEXEC=$2 DATA=$3 WORK=$4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export D2R_COMM_TIMEOUT=60
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
mpi() { local n=$1; shift; "$MPIEXEC" --oversubscribe -np "$n" "$D2R" "$@"; }
compare() { python3 "$HERE/compare_runs.py" "$@" || fail "compare $*"; }
# d2r fit exits 4 for a bilevel run that ends step_limited (a few outer steps): expected here.
run() { local want=$1; shift; "$@" >log.txt 2>&1; local rc=$?; [ "$rc" = "$want" ] || { tail -20 log.txt; fail "exit $rc (want $want): $*"; }; }

head -241 "$DATA/halfcheetah/random.csv" >hc.csv
REG=(hc.csv --targets a_0,a_1,a_2,a_3,a_4,a_5 --features s_0,s_1,s_2,s_3,s_4,s_5,s_6,s_7,s_8,s_9,s_10,s_11,s_12,s_13,s_14,s_15,s_16
     --hidden 16 --device cpu --quiet)
BIL=(--method bilevel --inner-steps 5 --inner-max-steps 10 --solver-iterations 10)
CLS=("$DATA/tabular/iris.csv" --task classification --label label --device cpu --quiet)
EP=(--epochs 2)  # the epochs of nll, pg and --final-model pg (a bilevel classifier refuses them otherwise)
DET=(--deterministic-reduction --reduction-block-rows 32)

echo "== 1. deterministic mode: 1, 2, 3 ranks, same bits"
for n in 1 2 3; do
  if [ "$n" = 1 ]; then L=("$D2R"); else L=("$MPIEXEC" --oversubscribe -np "$n" "$D2R"); fi
  run 0 "${L[@]}" fit "${REG[@]}" --method pg --steps 20 "${DET[@]}" --out pg$n
  run 4 "${L[@]}" fit "${REG[@]}" "${BIL[@]}" --outer-steps 3 "${DET[@]}" --out bil$n
  run 4 "${L[@]}" fit "${REG[@]}" "${BIL[@]}" --inner-batch-size 70 --outer-steps 3 "${DET[@]}" --out mb$n
  run 4 "${L[@]}" fit "${CLS[@]}" --method bilevel --outer-steps 2 "${DET[@]}" --out cls$n
  run 4 "${L[@]}" fit "${CLS[@]}" "${EP[@]}" --method bilevel --final-model pg --outer-steps 2 "${DET[@]}" --out clp$n
done
for n in 2 3; do compare pg1 pg$n; compare bil1 bil$n; compare mb1 mb$n; compare cls1 cls$n; compare clp1 clp$n; done
# Not vacuous: the minibatch run differs from the full-batch one.
python3 "$HERE/compare_runs.py" bil1 mb1 >/dev/null 2>&1 && fail "the minibatch run equals the full-batch run"

echo "== 2. engine order: within tolerance of the one-process run"
run 0 "$D2R" fit "${REG[@]}" --method nll --steps 20 --out nll0
run 0 mpi 2 fit "${REG[@]}" --method nll --steps 20 --out nll2
compare nll0 nll2 --rtol 1e-5
run 0 "$D2R" fit "${CLS[@]}" "${EP[@]}" --method pg --out cpg0
run 0 mpi 3 fit "${CLS[@]}" "${EP[@]}" --method pg --out cpg3
compare cpg0 cpg3 --rtol 1e-5
run 4 "$D2R" fit "${REG[@]}" "${BIL[@]}" --outer-steps 1 --precision double --out bd0
run 4 mpi 2 fit "${REG[@]}" "${BIL[@]}" --outer-steps 1 --precision double --out bd2
SKIP=solver_residual,solver_relative_residual,hypergradient_0,hypergradient,reward_0,reward_params,final,verdict,reason,warnings
compare bd0 bd2 --rtol 1e-6 --skip $SKIP
run 4 "$D2R" fit "${REG[@]}" "${BIL[@]}" --inner-batch-size 70 --outer-steps 1 --precision double --out mbd0
run 4 mpi 3 fit "${REG[@]}" "${BIL[@]}" --inner-batch-size 70 --outer-steps 1 --precision double --out mbd3
compare mbd0 mbd3 --rtol 1e-6 --skip $SKIP

echo "== 3. resume a 2-rank checkpoint with 3 ranks"
run 4 mpi 2 fit "${REG[@]}" "${BIL[@]}" --outer-steps 2 --checkpoint-every 1 "${DET[@]}" --out res
[ -f res/checkpoint.ckpt ] || fail "no checkpoint written by the 2-rank run"
run 4 mpi 3 fit "${REG[@]}" "${BIL[@]}" --outer-steps 3 --checkpoint-every 1 "${DET[@]}" --out res --resume
grep -q '"resumed_from_step": 2' res/results.json || fail "the 3-rank run did not resume from step 2"
compare bil1 res --skip resumed_from_step
# A full-batch bilevel classification run (each rank holds only its rows; the fingerprint is the
# whole set's): 1 outer step on 2 ranks, resumed on 3 to 2 steps, equals the one-process run.
run 4 mpi 2 fit "${CLS[@]}" --method bilevel --outer-steps 1 --checkpoint-every 1 "${DET[@]}" --out cres
run 4 mpi 3 fit "${CLS[@]}" --method bilevel --outer-steps 2 --checkpoint-every 1 "${DET[@]}" --out cres --resume
grep -q '"resumed_from_step": 1' cres/results.json || fail "the 3-rank classification run did not resume from step 1"
compare cls1 cres --skip resumed_from_step
# The same with minibatches: the checkpoint's pass and window, the pass's rows drawn again.
run 4 mpi 2 fit "${REG[@]}" "${BIL[@]}" --inner-batch-size 70 --outer-steps 2 --checkpoint-every 1 "${DET[@]}" --out mbres
run 4 mpi 3 fit "${REG[@]}" "${BIL[@]}" --inner-batch-size 70 --outer-steps 3 --checkpoint-every 1 "${DET[@]}" --out mbres --resume
grep -q '"resumed_from_step": 2' mbres/results.json || fail "the 3-rank minibatch run did not resume from step 2"
compare mb1 mbres --skip resumed_from_step

echo "== 4. failures end every rank"
# An --out holding an earlier run's results (no --overwrite): bad input, refused on every rank.
cp nll2/results.json nll2/results.json.before
run 2 mpi 2 fit "${REG[@]}" --method nll --steps 5 --out nll2
cmp -s nll2/results.json nll2/results.json.before || fail "a refused run rewrote --out"
grep -q "error" log.txt || fail "no error message for a used --out"
# Kill rank 1 mid-run (a plain fit of very many steps): the job must end with an error, not hang.
"$MPIEXEC" --oversubscribe -np 2 "$D2R" fit "${REG[@]}" --method pg --steps 100000000 --out killed >kill.txt 2>&1 &
job=$!
ranks=""
for _ in $(seq 100); do
  ranks=$(pgrep -P "$job" -x d2r | sort -n)
  [ "$(echo "$ranks" | grep -c .)" = 2 ] && break
  sleep 0.1
done
sleep 2
victim=$(echo "$ranks" | tail -1)
if [ -z "$victim" ] || ! kill -0 "$job" 2>/dev/null; then
  fail "the job's ranks were not found running (ranks: $ranks)"
  kill "$job" 2>/dev/null
else
  kill -9 "$victim"
  start=$SECONDS
  ( sleep 60; kill -9 "$job" 2>/dev/null ) &
  watchdog=$!
  wait "$job"
  rc=$?
  kill "$watchdog" 2>/dev/null
  echo "job ended with status $rc $((SECONDS - start)) s after rank 1 was killed"
  [ "$rc" != 0 ] || fail "the job of a killed rank exited 0"
  [ $((SECONDS - start)) -lt 55 ] || fail "the job hung after a rank was killed"
  [ ! -f killed/results.json ] || fail "a killed job wrote results"
fi

echo "== 5. reproduce and sweep on several ranks"
TAB=(reproduce tabular --quick --datasets iris --device cpu --quiet --data-dir "$DATA" --deterministic-reduction
     --reduction-block-rows 16)
SW=(sweep "${REG[@]}" --points 3 --seeds 1 --steps 20 "${DET[@]}")
for n in 1 2 3; do
  if [ "$n" = 1 ]; then L=("$D2R"); else L=("$MPIEXEC" --oversubscribe -np "$n" "$D2R"); fi
  run 0 "${L[@]}" "${TAB[@]}" --out tab$n
  run 0 "${L[@]}" "${SW[@]}" --out sw$n
done
for n in 2 3; do compare tab1 tab$n; compare sw1 sw$n; done
[ "$(ls tab3 | wc -l)" = 3 ] || fail "reproduce on 3 ranks wrote other files than results.json, summary.csv, curves.csv: $(ls tab3)"
run 0 "$D2R" sample --head diag --mean 0 --std 1 -G 10 --device cpu
run 2 mpi 2 sample --head diag --mean 0 --std 1 -G 10 --device cpu
grep -q "only 'd2r fit', 'd2r sweep' and 'd2r reproduce'" log.txt || fail "no clear refusal of sample on several ranks"

echo "== 6. each rank holds only its rows of the data (D2R_DATA_STATS)"
export D2R_DATA_STATS=1
for n in 1 2 3; do
  if [ "$n" = 1 ]; then L=("$D2R"); else L=("$MPIEXEC" --oversubscribe -np "$n" "$D2R"); fi
  if [ "$n" = 3 ]; then D=("${DET[@]}"); else D=(); fi  # 2 ranks: the engine's order; 3: blocks
  run 0 "${L[@]}" fit "${REG[@]}" --method nll --steps 2 "${D[@]}" --out st$n && cp log.txt st$n.txt
  run 4 "${L[@]}" fit "${REG[@]}" "${BIL[@]}" --outer-steps 1 "${D[@]}" --out sb$n && cp log.txt sb$n.txt
  run 4 "${L[@]}" fit "${CLS[@]}" --method bilevel --outer-steps 1 "${D[@]}" --out sc$n && cp log.txt sc$n.txt
  run 4 "${L[@]}" fit "${CLS[@]}" "${EP[@]}" --method bilevel --final-model pg --batch-size 40 --outer-steps 1 "${D[@]}" --out sp$n && cp log.txt sp$n.txt
  run 0 "${L[@]}" fit "${CLS[@]}" "${EP[@]}" --method nll --batch-size 40 "${D[@]}" --out sn$n && cp log.txt sn$n.txt
done
unset D2R_DATA_STATS
python3 - <<'PY' || fail "data stats"
import re
block = 32  # --reduction-block-rows of DET
reg = re.compile(r"d2r data stats \(rank (\d+) of (\d+)\): training rows held (\d+) of (\d+) \((\d+) bytes\); "
                 r"validation rows held (\d+) of (\d+) \((\d+) bytes\)\n")
cls = re.compile(r"d2r data stats \(rank (\d+) of (\d+)\): training rows held (\d+) of (\d+) \((\d+) bytes\); "
                 r"validation rows held (\d+) of (\d+) \((\d+) bytes\); test rows held (\d+) of (\d+) \((\d+) bytes\)")
phase = re.compile(r"d2r data stats \(rank (\d+) of (\d+)\): classifier phase: training rows held (\d+) of (\d+)")
def want(total, n, det):
    """The rows of every rank: one process all; engine order N/ranks; deterministic whole blocks."""
    if det:
        blocks = -(-total // block)
        return [min((r + 1) * blocks // n * block, total) - min(r * blocks // n * block, total) for r in range(n)]
    return [(r + 1) * total // n - r * total // n for r in range(n)]
def want_classifier(total, n, det, batch=40):
    """fit_classifier on host rows: the larger of a rank's parts of an epoch's batches (summed) and its rows."""
    parts = [0] * n
    for first in range(0, total, batch):
        parts = [a + b for a, b in zip(parts, want(min(batch, total - first), n, det))]
    return [max(a, b) for a, b in zip(parts, want(total, n, det))]
def check(prefix, pat, sets, row_bytes):
    """sets: names of the sets in the line; row_bytes[i]: bytes per row of set i (None: not checked);
    sharded[i]: whether set i is held by shards (else every rank holds every row)."""
    totals = None
    for n in (1, 2, 3):
        got = sorted(tuple(map(int, m.groups())) for m in pat.finditer(open(f"{prefix}{n}.txt").read()))
        assert [g[0] for g in got] == list(range(n)) and all(g[1] == n for g in got), (prefix, n, got)
        t = [got[0][2 + 3 * i + 1] for i in range(len(sets))]
        totals = totals or t
        assert t == totals and all(x > 0 for x in t), (prefix, n, t, totals)
        for i, (name, sharded) in enumerate(sets):
            held = [g[2 + 3 * i] for g in got]
            assert all(g[2 + 3 * i + 1] == totals[i] for g in got), (prefix, name, got)
            w = (sharded if callable(sharded) else want)(totals[i], n, n == 3) if sharded else [totals[i]] * n
            assert held == w, (prefix, n, name, held, w)
            if row_bytes[i] is not None:
                assert all(g[2 + 3 * i + 2] == g[2 + 3 * i] * row_bytes[i] for g in got), (prefix, name, got)
        print(f"{prefix}: {n} rank(s) hold " + "; ".join(f"{name} {[g[2 + 3 * i] for g in got]} of {totals[i]}"
                                                       for i, (name, _) in enumerate(sets)))
reg_row = (17 + 6) * 4      # features + targets, float
cls_row = 4 * 4 + 4         # iris: 4 features (float) + an int32 label
check("st", reg, [("training", True), ("validation", True)], [reg_row, reg_row])    # fit_policy
check("sb", reg, [("training", True), ("validation", True)], [reg_row, reg_row])    # full-batch bilevel
# Bilevel classification: BilevelTrainer on the rank's training rows, the validation and test
# metrics over the rank's rows (the model: the best-judged inner policy, no classifier phase); with
# --final-model pg, fit_classifier then takes the training rows from the host.
check("sc", cls, [("training", True), ("validation", True), ("test", True)], [cls_row] * 3)
assert "classifier phase" not in open("sc3.txt").read(), "a classifier phase in a --final-model best run"
check("sp", cls, [("training", True), ("validation", True), ("test", True)], [cls_row] * 3)
check("sp", phase, [("classifier-phase training", want_classifier)], [None])
# A plain classifier: the evaluation sets by shards; on several ranks no training rows besides its
# fit's (from the host: the rows it computes on), one process every row.
check("sn", cls, [("training", lambda t, n, det: [t] if n == 1 else [0] * n), ("validation", True), ("test", True)],
      [cls_row] * 3)
check("sn", phase, [("classifier-phase training", want_classifier)], [None])
t = int(re.search(r"classifier phase: training rows held \d+ of (\d+)", open("sn3.txt").read()).group(1))
assert max(want_classifier(t, 3, True)) < t, ("the 3-rank classifier holds every training row", t)
# The classification runs' policy workspaces: one process sized for the largest set; a rank holding
# its rows for the most rows one policy call sees there (its uploaded sets' rows and, with a
# classifier phase, the rows that phase holds at once), never for every row.
cap = re.compile(r"d2r data stats \(rank (\d+) of (\d+)\): policy batch capacity (\d+) rows")
for prefix in ("sc", "sp", "sn"):
    for n in (1, 2, 3):
        text = open(f"{prefix}{n}.txt").read()
        caps = {int(m.group(1)): int(m.group(3)) for m in cap.finditer(text)}
        sets = {int(m.group(1)): m.groups() for m in cls.finditer(text)}
        phases = {int(m.group(1)): int(m.group(3)) for m in phase.finditer(text)}
        assert sorted(caps) == list(range(n)), (prefix, n, caps)
        for r, g in sets.items():
            held = [int(g[2]), int(g[5]), int(g[8])]
            totals = [int(g[3]), int(g[6]), int(g[9])]
            expect = max(totals) if n == 1 else max([1] + held + [phases.get(r, 0)])
            assert caps[r] == expect, (prefix, n, r, caps[r], expect, held, phases.get(r))
        if n == 3:
            assert max(caps.values()) < max(totals), (prefix, "a rank sized for every row", caps, totals)
        print(f"{prefix}: {n} rank(s): policy batch capacity {[caps[r] for r in range(n)]}")
PY

if [ "$fails" != 0 ]; then echo "$fails failures"; exit 1; fi
echo "all data-parallel checks passed"
