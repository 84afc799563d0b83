#!/usr/bin/env bash
# Train the three served models on the grouped split, side by side (each checkpoints every epoch and
# resumes when this script is run again), then evaluate, calibrate and refit the out-of-distribution check.
# Logs go beside the checkpoints. One TensorFlow thread per run by default (THREADS=...). Measured on 2 cores:
# DenseNet121 and ResNet50 side by side about 45 minutes of wall time, MobileNetV2 alone about 25 (all three at
# once will take longer: three runs share two cores); evaluation and the OOD refit then about 20 minutes.
# Usage: nohup bash scripts/train_all.sh &
# Random-split models (for the leakage comparison only): ARCHS="mobilenetv2" PROTOCOL=random bash scripts/train_all.sh
set -u
cd "$(dirname "$0")/.."
export LC25000_DIR="${LC25000_DIR:-$(cd .. && pwd)/shared/data/lc25000_lung}"
runs="${LUNGFAKE_RUNS_DIR:-$HOME/.cache/lungfake/runs}"
protocol="${PROTOCOL:-grouped}"
mkdir -p "$runs"
pids=()
for arch in ${ARCHS:-mobilenetv2 resnet50 densenet121}; do
  ( if .venv/bin/python -m lungfake train --arch "$arch" --split "$protocol" --threads "${THREADS:-1}" >> "$runs/${arch}_$protocol.log" 2>&1; then
      echo "$(date -u +%FT%TZ) finished $arch $protocol" >> "$runs/train_all.log"
    else
      echo "$(date -u +%FT%TZ) $arch $protocol exited with $?" >> "$runs/train_all.log"
    fi ) &
  pids+=($!)
done
wait "${pids[@]}"
if [ "$protocol" = grouped ]; then
  .venv/bin/python -m lungfake evaluate >> "$runs/train_all.log" 2>&1
  .venv/bin/python -m lungfake ood-fit >> "$runs/train_all.log" 2>&1
fi
