#!/usr/bin/env bash
# Runs every bench case on both sides, interleaved: for each round, for each case, ours then
# PyTorch's (A B A B ...), THREADS threads each (default 2), and prints a table of the medians
# with the ratio ours / PyTorch's, then the QAT-step / float-step and int8 / f32 ratios, then
# the step cases' peak memory (peak_mb; ours only when the binary installs PeakAlloc).
#
#   bench/compare.sh [iters] [rounds]          # defaults: 10 iters, 5 rounds
#
# A case's median is the median over rounds of each run's median (one run = one process:
# WARMUP untimed runs, then `iters` timed ones). The inference cases are far cheaper than
# the others, so they run INFER_ITERS timed runs (default 10 x iters) on both sides.
# Environment: PYTHON (default ~/torch-ref/bin/python, needs torch), THREADS (2), WARMUP (2),
# INFER_ITERS, RAW (where the JSON lines go; default target/bench-compare.jsonl), CASES (a
# space-separated subset; default all), TORCH_MALLOC (see below).
#
# The burn-qat binary tells glibc to keep freed memory for reuse (cli/src/commands/malloc_policy.rs);
# PyTorch gains as much from the same policy, so by default its runs get the same thresholds
# through GLIBC_TUNABLES: the comparison is then of the kernels, not of allocator settings.
# TORCH_MALLOC=default runs PyTorch with glibc's defaults instead, as its users usually do.
set -euo pipefail

ITERS=${1:-10}
ROUNDS=${2:-5}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2}
INFER_ITERS=${INFER_ITERS:-$((ITERS * 10))}
PYTHON=${PYTHON:-$HOME/torch-ref/bin/python}
TORCH_MALLOC=${TORCH_MALLOC:-same}
case $TORCH_MALLOC in
  same) TORCH_TUNABLES="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824" ;;
  default) TORCH_TUNABLES=${GLIBC_TUNABLES:-} ;;
  *) echo "error: TORCH_MALLOC must be 'same' or 'default', not '$TORCH_MALLOC'" >&2; exit 1 ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RAW=${RAW:-$ROOT/target/bench-compare.jsonl}

ALL_CASES=(
  convbnrelu2d
  dwconvbnrelu2d
  linearrelu
  qat-step-lenet
  float-step-lenet
  qat-step-resnet-tiny
  float-step-resnet-tiny
  qat-step-mobilenetv2-tiny
  float-step-mobilenetv2-tiny
  int8-infer-lenet-b1
  f32-infer-lenet-b1
  int8-infer-lenet-b32
  f32-infer-lenet-b32
  int8-infer-mobilenetv2-tiny-b1
  f32-infer-mobilenetv2-tiny-b1
  int8-infer-mobilenetv2-tiny-b32
  f32-infer-mobilenetv2-tiny-b32
  int8-infer-convtranspose2d-b8
)
# CASES="a b c" runs a subset, in the given order.
if [[ -n ${CASES:-} ]]; then read -r -a CASES <<< "$CASES"; else CASES=("${ALL_CASES[@]}"); fi

"$PYTHON" -c 'import torch' 2>/dev/null || { echo "error: $PYTHON cannot import torch (set PYTHON=...)" >&2; exit 1; }
cargo build --release --quiet
# A private copy of the binary: a build elsewhere in this target folder cannot swap it mid-run.
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cp target/release/burn-qat "$TMP/burn-qat"

mkdir -p "$(dirname "$RAW")"
: > "$RAW"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; threads $THREADS each; $ITERS iters ($INFER_ITERS for inference) x $ROUNDS rounds, warmup $WARMUP; PyTorch malloc policy: $TORCH_MALLOC" >&2
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
started=$SECONDS
for round in $(seq 1 "$ROUNDS"); do
  for case in "${CASES[@]}"; do
    iters=$ITERS
    [[ $case == *-infer-* ]] && iters=$INFER_ITERS
    line=$("$TMP/burn-qat" bench "$case" --iters "$iters" --warmup "$WARMUP" --threads "$THREADS")
    echo "{\"side\": \"ours\", \"round\": $round, \"result\": $line}" >> "$RAW"
    line=$(GLIBC_TUNABLES=$TORCH_TUNABLES "$PYTHON" bench/torch_reference.py "$case" --iters "$iters" --warmup "$WARMUP" --threads "$THREADS")
    echo "{\"side\": \"pytorch\", \"round\": $round, \"result\": $line}" >> "$RAW"
  done
  echo "round $round/$ROUNDS done ($((SECONDS - started)) s)" >&2
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

"$PYTHON" - "$RAW" "${CASES[@]}" <<'PY'
import json, statistics, sys

raw, cases = sys.argv[1], sys.argv[2:]
runs, mins, peaks = {}, {}, {}
for line in open(raw):
    r = json.loads(line)
    key = (r["side"], r["result"]["case"])
    runs.setdefault(key, []).append(r["result"]["median_ms"])
    mins.setdefault(key, []).append(r["result"]["min_ms"])
    if "peak_mb" in r["result"]:
        peaks.setdefault(key, []).append(r["result"]["peak_mb"])
med = {k: statistics.median(v) for k, v in runs.items()}
fastest = {k: min(v) for k, v in mins.items()}
peak = {k: statistics.median(v) for k, v in peaks.items()}
cases = [c for c in cases if ("ours", c) in med]  # a CASES=... subset

def spread(side, c):
    v = runs[(side, c)]
    return f"{min(v):.3g}-{max(v):.3g}"

# The medians, the ratio, and the range of the per-round medians (how noisy the case was).
print(f"| {'case':<22} | {'ours ms':>9} | {'PyTorch ms':>10} | {'ours / PyTorch':>14} | {'ours rounds':>13} | {'PyTorch rounds':>14} |")
print(f"|{'-' * 24}|{'-' * 10}:|{'-' * 11}:|{'-' * 15}:|{'-' * 14}:|{'-' * 15}:|")
for c in cases:
    ours, theirs = med[("ours", c)], med[("pytorch", c)]
    print(f"| {c:<22} | {ours:>9.3f} | {theirs:>10.3f} | {ours / theirs:>13.2f}x | {spread('ours', c):>13} | {spread('pytorch', c):>14} |")

print()
print(f"| {'ratio of medians':<58} | {'ours':>6} | {'PyTorch':>7} |")
print(f"|{'-' * 60}|{'-' * 7}:|{'-' * 8}:|")
def row(name, a, b, table=med):
    if all((side, c) in table for side in ("ours", "pytorch") for c in (a, b)):
        print(f"| {name:<58} | {table[('ours', a)] / table[('ours', b)]:>5.2f}x | {table[('pytorch', a)] / table[('pytorch', b)]:>6.2f}x |")
for m in ("lenet", "resnet-tiny", "mobilenetv2-tiny"):
    row(f"qat-step-{m} / float-step-{m}", f"qat-step-{m}", f"float-step-{m}")
for m in ("lenet", "mobilenetv2-tiny"):
    for b in ("b1", "b32"):
        row(f"int8 speed-up: f32-infer-{m}-{b} / int8-infer-{m}-{b}", f"f32-infer-{m}-{b}", f"int8-infer-{m}-{b}")

# On a noisy machine the fastest run of each side is the steadier estimate of what the code
# costs (noise only adds time): the same ratios from the minimum over all rounds' runs.
print()
print(f"| {'ratio of minimums (fastest run of all rounds)':<58} | {'ours':>6} | {'PyTorch':>7} |")
print(f"|{'-' * 60}|{'-' * 7}:|{'-' * 8}:|")
for c in cases:
    ours, theirs = fastest[("ours", c)], fastest[("pytorch", c)]
    print(f"| {c + ' ours / PyTorch':<58} | {ours / theirs:>5.2f}x | {'':>7} |")
for m in ("lenet", "resnet-tiny", "mobilenetv2-tiny"):
    row(f"qat-step-{m} / float-step-{m}", f"qat-step-{m}", f"float-step-{m}", fastest)
for m in ("lenet", "mobilenetv2-tiny"):
    for b in ("b1", "b32"):
        row(f"int8 speed-up: f32-infer-{m}-{b} / int8-infer-{m}-{b}", f"f32-infer-{m}-{b}", f"int8-infer-{m}-{b}", fastest)

# Peak memory of the training steps (MiB above the level before the timed runs; see README).
stepped = [c for c in cases if ("ours", c) in peak or ("pytorch", c) in peak]
if stepped:
    fmt = lambda side, c: f"{peak[(side, c)]:.1f}" if (side, c) in peak else "-"
    print()
    print(f"| {'peak memory, MiB':<28} | {'ours':>8} | {'PyTorch':>8} |")
    print(f"|{'-' * 30}|{'-' * 9}:|{'-' * 9}:|")
    for c in stepped:
        print(f"| {c:<28} | {fmt('ours', c):>8} | {fmt('pytorch', c):>8} |")
    print()
    print(f"| {'peak ratio':<58} | {'ours':>6} | {'PyTorch':>7} |")
    print(f"|{'-' * 60}|{'-' * 7}:|{'-' * 8}:|")
    for m in ("lenet", "resnet-tiny", "mobilenetv2-tiny"):
        row(f"qat-step-{m} / float-step-{m}", f"qat-step-{m}", f"float-step-{m}", peak)
PY
