#!/usr/bin/env bash
# 1 vs 2 MPI ranks on the HalfCheetah-size bilevel run (data/halfcheetah/random.csv: 8000 train /
# 2000 validation rows, MLP 17→[64,64]→6, recommended preset), cpu backend, 5 outer steps.
# Usage: tests/mpi/bench_ranks.sh build/host/cli/d2r data   (run in a scratch directory)
D=$1 DATA=$2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 D2R_COMM_STATS=1
T=a_0,a_1,a_2,a_3,a_4,a_5
F=s_0,s_1,s_2,s_3,s_4,s_5,s_6,s_7,s_8,s_9,s_10,s_11,s_12,s_13,s_14,s_15,s_16
for rep in 1 2; do
  for n in 1 2; do
    rm -rf hb$n
    mpirun --oversubscribe -np $n "$D" fit "$DATA/halfcheetah/random.csv" --targets $T --features $F --method bilevel \
      --outer-steps 5 --device cpu --out hb$n >log$n.txt 2>&1
    echo "np $n rep $rep: $(grep -o 'wall time [0-9.]* s' log$n.txt); $(grep -o '[0-9]* inner steps in [0-9]* outer steps' log$n.txt); $(grep 'comm stats' log$n.txt)"
  done
done
python3 - <<'PY'
import json
for n in (1, 2):
    j = json.load(open(f"hb{n}/results.json"))
    r = j["records"] if "records" in j else j["outer_records"]
    print(n, "solver iterations per step:", [x.get("solver_iterations") for x in r], "inner:", [x.get("inner_steps") for x in r])
PY
