#!/usr/bin/env bash
# The bench's figures on a machine with more cores (no broker there: no Kafka stages), one run:
#   0. unpack .devbench/bundle (bench/device/pack.py made it here) into $SITE and .cache/
#   1. the machine: lscpu, bf16 flags, cgroup, versions                       -> $OUT/machine.txt
#   2. the accuracy gates, bf16 and int8 vs f32, OpenVINO f32 vs onnxruntime  -> $OUT/accuracy.json
#   3. bench/run.py --no-kafka on every CPU: bare sweep, service sweep, pairs -> $OUT/bench_all.json
#   4. the same pinned to 2 CPUs (a hyperthread pair where there is one)      -> $OUT/bench_2cpu.json
#   5. the service logs                                                       -> $OUT/service_logs.tar.gz
# Everything printed also goes to $OUT/log.txt; each stage has its own time cap, and the JSON files are
# written after every stage, so a run cut short still returns what it measured.
#
# On that machine:  bash bench/device/run.sh            (OUT is set there)
# Rehearsal here:       DEVBENCH_LOCAL=1 OUT=/tmp/devbench DEVBENCH_SECONDS=1 DEVBENCH_SWEEP_SECONDS=0.5 \
#                         DEVBENCH_ROUNDS=1 DEVBENCH_FRAMES=40 bash bench/device/run.sh
#   (DEVBENCH_LOCAL=1: this venv, nothing unpacked; DEVBENCH_PYTHON=<a python3.12> instead rehearses the
#   unpacking too, into DEVBENCH_SITE.)
set -u
cd "$(dirname "$0")/../.."
REPO=$PWD
OUT=${OUT:-$REPO/out/bench-device}
SITE=${DEVBENCH_SITE:-/tmp/site}
SECS=${DEVBENCH_SECONDS:-2.5}          # per service throughput point and per pair half
SWEEP=${DEVBENCH_SWEEP_SECONDS:-1.2}   # per point of the bare sweep
ROUNDS=${DEVBENCH_ROUNDS:-3}           # back-to-back pairs for service_vs_best_bare
FRAMES=${DEVBENCH_FRAMES:-}            # accuracy gate: empty = every frame of bikes.mp4
STAGES=${DEVBENCH_STAGES:-"accuracy all pair"}  # a rerun can name fewer
CAP_ACCURACY=${DEVBENCH_CAP_ACCURACY:-70}
CAP_ALL=${DEVBENCH_CAP_ALL:-220}  # (g), the service ceiling, takes about 25 s of it
CAP_PAIR=${DEVBENCH_CAP_PAIR:-180}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
command -v timeout >/dev/null || timeout() { shift 3; "$@"; }  # no coreutils timeout: run uncapped
stage() { echo "=== [$(date -u +%H:%M:%S), ${SECONDS}s] $*"; }

if [ "${DEVBENCH_LOCAL:-0}" = 1 ]; then
  PY=$REPO/.venv/bin/python
  export PYTHONPATH=$REPO/services/shared:$REPO/services/inference-service:$REPO
else
  PY=${DEVBENCH_PYTHON:-python3}
  stage "unpack .devbench/bundle into $SITE"
  "$PY" bench/device/unpack.py --bundle .devbench/bundle --site "$SITE" || { echo "unpack failed"; exit 1; }
  export PYTHONPATH=$SITE:$REPO/services/shared:$REPO/services/inference-service:$REPO
fi

stage "the machine"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "uname: $(uname -a)"
  echo "nproc: $(nproc 2>/dev/null)"
  echo "bf16/amx/avx512 flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(amx|avx512_bf16|avx512f$|avx512_vnni|avx_vnni)' | tr '\n' ' ')"
  echo "cgroup cpu.max: $(cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo none)"
  echo "cpu0 thread siblings: $(cat /sys/devices/system/cpu/cpu0/topology/thread_siblings_list 2>/dev/null || echo unknown)"
  echo "memory: $(grep -m1 MemTotal /proc/meminfo)"
  echo "kernel: $(cat /proc/version 2>/dev/null)"
  echo "--- lscpu"
  lscpu 2>/dev/null || grep -m1 -E '^model name' /proc/cpuinfo
  echo "--- python"
  "$PY" - <<'EOF'
import importlib.metadata as md, sys
print("python", sys.version.split()[0], sys.executable)
for dist in ("numpy", "onnxruntime", "openvino", "opencv-python-headless", "fastapi", "starlette", "pydantic",
             "pydantic-core", "pydantic-settings", "uvicorn", "httptools", "uvloop", "orjson", "httpx", "psutil"):
    try:
        print(f"{dist} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"{dist} MISSING")
import openvino as ov, onnxruntime as ort
print("openvino", ov.__version__, "CPU:", ov.Core().get_property("CPU", "FULL_DEVICE_NAME"))
print("openvino CPU capabilities:", ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
print("onnxruntime", ort.__version__, ort.get_available_providers())
import inference_service.app, bench.run  # everything the run imports, before the clock matters
print("imports: ok")
EOF
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

# A stage cut short by its cap: its inference service (own process group) would run on; stop it by its pid.
reap() {
  for f in "$REPO"/out/bench-no-kafka-*/inference.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null && echo "stopped a leftover inference service (pid $(cat "$f"))"
    rm -f "$f"
  done
}
wants() { case " $STAGES " in *" $1 "*) return 0 ;; *) echo "(stage $1 not asked)"; return 1 ;; esac; }

stage "accuracy gate (cap ${CAP_ACCURACY}s)"
if wants accuracy; then
  timeout -k 5 "$CAP_ACCURACY" "$PY" -m bench.device.accuracy --out "$OUT/accuracy.json" ${FRAMES:+--frames "$FRAMES"}
  echo "accuracy: exit $?"
fi

# --try-bf16: a sandbox's /proc/cpuinfo may not list AMX/AVX512-BF16 although the CPU has them; the sweep
# records what OpenVINO actually computes in.
ALL=$(nproc 2>/dev/null || echo "?")
# (g)'s model, built by pack.py (this machine has no onnx package to build it); absent: (g) is not measured.
NULL_MODEL=""
if [ -f .devbench/bundle/null.onnx ]; then NULL_MODEL="--null-model .devbench/bundle/null.onnx"; fi
stage "bench on all $ALL CPUs (cap ${CAP_ALL}s)"
if wants all; then
  timeout -k 20 "$CAP_ALL" "$PY" -m bench.run --no-kafka --try-bf16 --out "$OUT/bench_all.json" \
    --cpus-label "$ALL vCPU (all)" --seconds "$SECS" --sweep-seconds "$SWEEP" --rounds "$ROUNDS" \
    $NULL_MODEL
  echo "bench on all CPUs: exit $?"
  reap
fi

# Two CPUs: cpu0 and its hyperthread sibling where the topology names exactly one (a 2-vCPU cloud VM is
# one core's two threads), else CPUs 0 and 1.
PAIR=0,1
SIBLINGS=$(cat /sys/devices/system/cpu/cpu0/topology/thread_siblings_list 2>/dev/null)
if [[ "$SIBLINGS" =~ ^0,[0-9]+$ ]]; then PAIR=$SIBLINGS; fi
stage "bench pinned to CPUs $PAIR (cap ${CAP_PAIR}s)"
if wants pair; then
  timeout -k 20 "$CAP_PAIR" "$PY" -c 'import os, sys
os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(",")})
print("affinity:", sorted(os.sched_getaffinity(0)), flush=True)
os.execvp(sys.argv[2], sys.argv[2:])' "$PAIR" "$PY" -m bench.run --no-kafka --try-bf16 --out "$OUT/bench_2cpu.json" \
    --cpus-label "2 vCPU (affinity $PAIR of $ALL)" --seconds "$SECS" --sweep-seconds "$SWEEP" --rounds "$ROUNDS" \
    $NULL_MODEL
  echo "bench pinned to 2 CPUs: exit $?"
  reap
fi

stage "service logs"
tar -czf "$OUT/service_logs.tar.gz" -C "$REPO/out" $(cd "$REPO/out" && ls -d bench-no-kafka-* 2>/dev/null) 2>/dev/null
ls -la "$OUT"
stage "done"
