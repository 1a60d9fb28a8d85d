#!/usr/bin/env bash
# The GPU check of issue 28, as one prepared script for a GPU machine that cannot download.
#
# What it does, part by part, each under its own time limit (a failure or timeout of one part is
# recorded and the next part runs), in this order:
#   install       pip-installs the carried wheels (.whl/*.whl: pyro-ppl and what the machine's
#                 image lacks) with --no-index, then this checkout (pip install -e . --no-deps;
#                 PYTHONPATH as a fallback); prints nvidia-smi and the versions
#   tests         python -m pytest -q -m "cuda and not compile" tests/   (tests/cuda/test_cuda.py)
#   tests_compile python -m pytest -q -m "cuda and compile" tests/         (Inductor, CUDA graphs)
#   vrnn_step     benchmarks/bench_vrnn_step.py --device cuda   (VRNN update vs the hand-written loop)
#   fivo          benchmarks/bench_fivo.py --device cuda        (FIVO vs IWAE updates; FIVO/IWAE(1024))
#   jsb_eval      benchmarks/bench_preset.py: FIVO(1024) of the JSB test split with the pretrained
#                 vrnn-jsb-z32, and FIVO(128) beside the CPU's figure       (needs the JSB data)
#   jsb_updates   benchmarks/bench_preset.py: updates/s of train() with the vrnn-jsb-z32 preset at
#                 batch 4 and batch 64                                       (needs the JSB data)
#   jsb_updates_compiled  the same with --compile (the compiled per-step engine, Inductor on CUDA;
#                 the compiling epoch untimed)                               (needs the JSB data)
#   engine        benchmarks/bench_engine.py --device cuda --cuda-graphs --skip-objectives (compiled vs eager vs CUDA
#                 graphs; its evaluation part needs the JSB data)
# and writes $OUT/gpu_check.json (every part's status, exit code, seconds, results; rewritten
# after each part, so a run cut short still leaves what it did) and $OUT/gpu_check.log.
#
# Before the call, on the CPU machine, in the repository root (once; .whl/ is git-ignored):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl \
#       pyro-ppl==1.9.2 pyro-api==0.1.2 arviz==0.23.4 h5netcdf==1.8.3 xarray-einstats==0.11.0 platformdirs==4.14.9
#   mkdir -p .whl/data && cp -r ../shared/data/jsb_chorales .whl/data/    # the JSB data (500 KB)
# (pyro-ppl needs numpy, opt_einsum, torch and tqdm, which the image has, and pyro-api, which it
# lacks; arviz, optional for the CUDA tests, needs h5netcdf, xarray-einstats and platformdirs
# beside the image's xarray, h5py, pandas, scipy and matplotlib. music21 is not carried: the
# tests that need it skip.) Then, with the device tool:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=480)
# and, to rerun only some parts (the install runs again: a fresh machine has nothing):
#   run(command="GPU_CHECK_BUDGET=240 bash benchmarks/gpu_check.sh engine", carry=[".whl"], timeout_s=300)
#
# Usage: bash benchmarks/gpu_check.sh [--dry-run] [PART ...]   (default: every part, in order)
# Environment: OUT (default /tmp/gpu_check_out), GPU_CHECK_BUDGET (seconds for the whole script,
# default 420: parts that would start past it are skipped, and each part's limit is cut to what is
# left), GPU_CHECK_WHEELS (default .whl), GPU_CHECK_DATA (a folder holding jsb_chorales/; default:
# $PYROSEQUENCE_DATA, .whl/data, shared/data, ../shared/data, the first that holds JSB),
# PYTHON (default python3). --dry-run prints each part's command instead of running it.
# For trying the script's own machinery on a CPU machine only: GPU_CHECK_DEVICE=cpu (the parts run
# on the CPU, without the CUDA check) and GPU_CHECK_NO_INSTALL=1 (no pip).

set -u
set -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
PY="${PYTHON:-python3}"
OUT="${OUT:-${TMPDIR:-/tmp}/gpu_check_out}"
STATE="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
WHEELS="${GPU_CHECK_WHEELS:-$REPO/.whl}"
BUDGET="${GPU_CHECK_BUDGET:-420}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
ALL_PARTS=(install tests tests_compile vrnn_step fivo jsb_eval jsb_updates jsb_updates_compiled engine)
DRY=0
PARTS=()
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *)
            if [[ " ${ALL_PARTS[*]} " != *" $arg "* ]]; then
                echo "gpu_check.sh: unknown part '$arg'; parts: ${ALL_PARTS[*]}" >&2
                exit 2
            fi
            PARTS+=("$arg") ;;
    esac
done
if [[ ${#PARTS[@]} -eq 0 ]]; then
    PARTS=("${ALL_PARTS[@]}")
elif [[ " ${PARTS[*]} " != *" install "* ]]; then
    PARTS=(install "${PARTS[@]}")  # a fresh machine has nothing installed
fi

mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
: > "$STATE/status.tsv"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # the checkout, also if the editable install fails

log() { echo "[gpu_check $(date +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$LOG"; }

summarise() {
    "$PY" benchmarks/gpu_check.py summary "$STATE" "$OUT/gpu_check.json" >>"$LOG" 2>&1 \
        || log "could not write $OUT/gpu_check.json"
}

record() {  # name status rc seconds note
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >> "$STATE/status.tsv"
    summarise
}

# part NAME LIMIT COMMAND...: run COMMAND under LIMIT seconds (cut to the budget left), logged
part() {
    local name="$1" limit="$2"
    shift 2
    local left=$((BUDGET - SECONDS))
    if (( left < 15 )); then
        log "$name: skipped, the budget of ${BUDGET}s is spent"
        record "$name" skipped "" "" "budget of ${BUDGET}s spent (rerun: bash benchmarks/gpu_check.sh $name)"
        return
    fi
    (( limit > left - 5 )) && limit=$((left - 5))
    log "$name: start (limit ${limit}s): $*"
    if (( DRY )); then
        record "$name" dry-run 0 0 "$*"
        return
    fi
    local start=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    local took=$((SECONDS - start))
    case "$rc" in
        0) log "$name: ok (${took}s)"; record "$name" ok 0 "$took" ;;
        124|137) log "$name: TIMEOUT after ${took}s"; record "$name" timeout "$rc" "$took" "stopped at its limit of ${limit}s" ;;
        *) log "$name: FAILED (exit $rc, ${took}s)"; record "$name" failed "$rc" "$took" "see gpu_check.log" ;;
    esac
}

skip() {  # name reason
    log "$1: skipped ($2)"
    record "$1" skipped "" "" "$2"
}

find_data() {
    local candidate
    for candidate in "${GPU_CHECK_DATA:-}" "${PYROSEQUENCE_DATA:-}" "$WHEELS/data" "$REPO/shared/data" "$REPO/../shared/data"; do
        [[ -n "$candidate" && -d "$candidate" ]] || continue
        if "$PY" -c "import sys; from pyrosequence.data import load_split; load_split('jsb', 'test', sys.argv[1])" \
                "$candidate" >/dev/null 2>&1; then
            (cd "$candidate" && pwd)
            return 0
        fi
    done
    return 1
}

install() {
    if [[ -n "${GPU_CHECK_NO_INSTALL:-}" ]]; then
        echo "GPU_CHECK_NO_INSTALL set: nothing installed"
    else
        install_packages || return 1
    fi
    nvidia-smi || echo "nvidia-smi: not available"
    "$PY" benchmarks/gpu_check.py env "$STATE/env.json" && cat "$STATE/env.json"
    "$PY" -c "import torch, pyro, pyrosequence; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available(), '| pyro', pyro.__version__, '| pyrosequence', pyrosequence.__file__)"
}

install_packages() {
    shopt -s nullglob
    local wheels=("$WHEELS"/*.whl)
    shopt -u nullglob
    if (( ${#wheels[@]} )); then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check "${wheels[@]}" || return 1
    else
        echo "no wheels in $WHEELS (see this script's header); using what is installed"
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --disable-pip-version-check -e . \
        || echo "editable install failed; the checkout is on PYTHONPATH instead"
}
export -f install install_packages
export PY WHEELS STATE

log "repository $REPO, output $OUT, budget ${BUDGET}s, parts: ${PARTS[*]}$( ((DRY)) && echo ' (dry run)')"
DATA=""
for name in "${PARTS[@]}"; do
    case "$name" in
        install)
            part install 180 bash -c install
            if (( ! DRY )) && [[ "$DEVICE" == cuda* ]] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>>"$LOG"; then
                log "no CUDA device visible to torch: the GPU parts cannot run"
                for other in "${PARTS[@]}"; do
                    [[ "$other" == install ]] || skip "$other" "no CUDA device"
                done
                exit 1
            fi
            DATA="$(find_data)" && log "JSB data: $DATA" \
                || log "JSB data: not found (not carried? see the header); jsb_eval and jsb_updates are skipped, engine runs without its evaluation part"
            ;;
        tests)
            part tests 240 "$PY" -m pytest -q -m "cuda and not compile" tests/ -p no:cacheprovider \
                --continue-on-collection-errors --junitxml="$STATE/tests.xml" ;;
        tests_compile)
            part tests_compile 240 "$PY" -m pytest -q -m "cuda and compile" tests/ -p no:cacheprovider \
                --continue-on-collection-errors --junitxml="$STATE/tests_compile.xml" ;;
        vrnn_step)
            part vrnn_step 60 "$PY" benchmarks/gpu_check.py bench bench_vrnn_step "$STATE/vrnn_step.json" -- \
                --device "$DEVICE" --rounds 5 --steps 5 ;;
        fivo)
            part fivo 120 "$PY" benchmarks/gpu_check.py bench bench_fivo "$STATE/fivo.json" -- \
                --device "$DEVICE" --rounds 5 --steps 3 --eval-particles 1024 ;;
        jsb_eval)
            if [[ -z "$DATA" ]] && (( ! DRY )); then skip jsb_eval "no JSB data on this machine (carry .whl/data/jsb_chorales)"; continue; fi
            part jsb_eval 90 "$PY" benchmarks/gpu_check.py bench bench_preset "$STATE/jsb_eval.json" -- \
                --device "$DEVICE" --data-root "${DATA:-DATA}" --skip-updates --eval-particles 1024 --check-particles 128 ;;
        jsb_updates)
            if [[ -z "$DATA" ]] && (( ! DRY )); then skip jsb_updates "no JSB data on this machine (carry .whl/data/jsb_chorales)"; continue; fi
            part jsb_updates 150 "$PY" benchmarks/gpu_check.py bench bench_preset "$STATE/jsb_updates.json" -- \
                --device "$DEVICE" --data-root "${DATA:-DATA}" --eval-particles 0 --batches 4 64 --updates 10 --epochs 2 ;;
        jsb_updates_compiled)
            if [[ -z "$DATA" ]] && (( ! DRY )); then skip jsb_updates_compiled "no JSB data on this machine (carry .whl/data/jsb_chorales)"; continue; fi
            part jsb_updates_compiled 180 "$PY" benchmarks/gpu_check.py bench bench_preset "$STATE/jsb_updates_compiled.json" -- \
                --device "$DEVICE" --data-root "${DATA:-DATA}" --eval-particles 0 --batches 4 64 --updates 10 --epochs 2 --compile ;;
        engine)
            if [[ -n "$DATA" ]] || (( DRY )); then
                eval_args=(--data-root "${DATA:-DATA}" --eval-rounds 2)
            else
                eval_args=(--skip-eval)
            fi
            part engine 300 "$PY" benchmarks/gpu_check.py bench bench_engine "$STATE/engine.json" -- \
                --device "$DEVICE" --cuda-graphs --configs vrnn-b4 --rounds 3 --steps 3 --skip-objectives "${eval_args[@]}" ;;
    esac
done
summarise
log "done: $OUT/gpu_check.json"
"$PY" -c "import json, sys; d = json.load(open(sys.argv[1])); print({k: v['status'] for k, v in d['parts'].items()}); \
sys.exit(0 if d['all_ok'] else 1)" "$OUT/gpu_check.json"
