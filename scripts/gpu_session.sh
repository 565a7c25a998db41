#!/usr/bin/env bash
# One lent-GPU session in one call: the environment, a smoke solve, the solvers suite on the GPU
# (jaxcontext against cupy and torch on the same device), the sparse kernels measured there, and
# the solver tests run on the device.
#
#   bash scripts/gpu_session.sh OUTDIR [STAGE ...]
#
# Stages (default: all, in this order): env smoke sbm100k sbm1m knn rbf kernels bulk rbffree
# tests; and, named only, sweep (scripts/gpu_lanczos_sweep.py: Lanczos block widths on kNN and
# the dense RBF kernel, where cupy was faster in session 11; SWEEP_ARGS overrides its arguments)
# and smallsvd (scripts/gpu_small_svd.py: the Golub-Kahan small SVD routes, session 13). Each stage runs under its own time
# limit (STAGE_LIMIT_<name> seconds overrides it), so one slow or broken stage costs its limit
# and no more; everything goes to OUTDIR/log.txt and the bench records to OUTDIR/res/ (also
# packed into OUTDIR/results.tgz after every stage, so what finished comes back even if the call
# is cut short).
#
# Budget (H200, session 11): a cold start ~30-70 s; sbm100k took 97 s, sbm1m 122 s, knn (auto,
# cupy, torch) 96 s, rbf (dense K, cupy, torch) 58 s; each jaxcontext entry's first call compiles
# for 20-50 s there. All stages do not fit one 15-minute lease: name the ones you need.
#
# The float64 references come from $JAXCONTEXT_BENCH_CACHE (default ./.bench-cache; copy
# ~/.cache/jaxcontext-bench there and carry it): computing the 1M one on the device's CPU would
# take minutes. The slow CPU peers (ARPACK, PRIMME, scikit-learn) are left out: their figures are
# the CPU records'; the GPU records compare jaxcontext with cupy and torch on the same GPU.
set -u
set -f  # the --impl patterns are globs for the bench, not for the shell
OUT=${1:?usage: gpu_session.sh OUTDIR [STAGE ...]}
shift
STAGES=${*:-env smoke sbm100k sbm1m knn rbf kernels bulk rbffree tests}
mkdir -p "$OUT/res"
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/log.txt
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
export JAXCONTEXT_BENCH_CACHE=${JAXCONTEXT_BENCH_CACHE:-$PWD/.bench-cache}
# One persistent compilation cache for the whole session: a stage that runs a solver an earlier
# stage compiled loads it (the bench's first-call times then show no compile; the earlier one's do)
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jaxcontext-gpu-session-cache}
# JAX, cupy and torch share the card: JAX takes half, not its default 75%
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}
PY=${PYTHON:-python3}
TAG=${TAG:-gpu}

stage() {
  local name=$1 limit=$2
  shift 2
  local var="STAGE_LIMIT_$name"
  limit=${!var:-$limit}
  echo "=== $name $(date -u +%T) limit ${limit}s: $*" | tee -a "$LOG"
  if [ "$1" = bench ]; then  # a shell function: run it in a child bash under the limit
    set -- bash -c 'bench "$@"' bench "${@:2}"
  fi
  timeout --signal=INT --kill-after=15 "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "=== $name rc=$rc $(date -u +%T)" | tee -a "$LOG"
  (cd "$OUT" && tar czf results.tgz res)
  return 0
}

bench() {  # bench NAME ARGS...: the solvers suite, full size, GPU peers, records under res/
  local name=$1
  shift
  $PY -m jaxcontext.bench --suite solvers --size full --no-memory \
    --exclude arpack --exclude 'scipy eigsh' --exclude propack --exclude sklearn --exclude primme \
    --baseline 'cupy svds' --baseline 'cupy eigsh' --json "$OUT/res/$TAG-$name.json" --markdown "$OUT/res/$TAG-$name.md" "$@"
}

export -f bench
export PY OUT TAG
for s in $STAGES; do
  case $s in
    env)
      stage env 30 bash -c "nvidia-smi; $PY -c 'import jax, jaxlib, numpy, scipy; print(jax.__version__, jaxlib.__version__, numpy.__version__, scipy.__version__); print(jax.devices())'; $PY -m pip list 2>/dev/null | grep -iE '^(jax|cupy|torch|flax|optax|chex|numpy|scipy|scikit-learn|primme) '"
      ;;
    smoke)
      stage smoke 75 $PY scripts/gpu_smoke.py
      ;;
    sbm100k)
      stage sbm100k 120 bench sbm-100k --only 'sbm/n100000/' --repeats 11 --time-budget 20 \
        --impl '[j]axcontext' --impl 'jaxcontext[[]lanczos]' --impl cupy --impl torch
      ;;
    sbm1m)
      stage sbm1m 180 bench sbm-1m --only 'sbm/n1000000/' --repeats 5 --time-budget 20 \
        --impl '[j]axcontext' --impl 'jaxcontext[[]lanczos]' --impl cupy --impl torch
      ;;
    knn)
      # KNN_IMPLS / RBF_IMPLS: other --impl choices (a short second call: no lanczos compiles)
      stage knn 150 bench knn-50k --only 'knn/m50000' --repeats 11 --time-budget 20 \
        ${KNN_IMPLS:---impl [j]axcontext --impl jaxcontext[[]lanczos] --impl cupy --impl torch}
      ;;
    rbf)
      stage rbf 150 bench rbf-20k --only 'rbf/m20000' --repeats 5 --time-budget 20 \
        ${RBF_IMPLS:---impl jaxcontext[[]dense?K] --impl matrix-free --impl cupy --impl torch}
      ;;
    sweep)
      stage sweep 420 $PY scripts/gpu_lanczos_sweep.py ${SWEEP_ARGS:---blocks 16,32}
      ;;
    smallsvd)
      stage smallsvd 300 $PY scripts/gpu_small_svd.py ${SMALLSVD_ARGS:---solve auto}
      ;;
    kernels)
      stage kernels 90 $PY scripts/measure_sparse_kernels.py --only-key --variants \
        --key-kernels auto,segment,bcsr,ell --key-rounds 7 --out "$OUT/res/$TAG-kernels.json"
      ;;
    bulk)
      stage bulk 90 bench sbm-bulk-100k --only 'sbm-bulk' --repeats 5 --time-budget 20
      ;;
    rbffree)
      stage rbffree 120 bench rbf-free-100k --only 'rbf-free'
      ;;
    tests)
      # one GPU shared by the workers: no preallocation (each would take half the card)
      stage tests 240 env XLA_PYTHON_CLIENT_PREALLOCATE=false $PY -m pytest -q -n 8 \
        -p no:cacheprovider --durations=5 tests/test_spmm.py tests/test_linalg.py
      ;;
    *)
      echo "unknown stage $s" | tee -a "$LOG"
      ;;
  esac
done
tail -n 60 "$LOG"
