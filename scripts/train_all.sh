#!/usr/bin/env bash
# Train the three served models on the grouped split, side by side (each checkpoints every epoch and
# resumes when this script is run again), then evaluate, calibrate and refit the out-of-distribution check.
# Logs go beside the checkpoints. One TensorFlow thread per run by default (THREADS=...). Measured on 2 cores,
# (weights/history/), in wall-clock minutes of training: MobileNetV2's 82 epochs 144 (64 at 128 px, 83; its last
# 18 at 224 px, 61; two runs side by side), ResNet50's 52 epochs 115 and DenseNet121's 40 epochs 63 (one cycle
# each at 112 px, alone on two threads: THREADS=2 ARCHS=resnet50, then THREADS=2 ARCHS=densenet121);
# all three at once take longer (three runs share two cores), so a run cut off by the
# end of a session resumes from its checkpoint when this script is run again. Evaluation and the OOD refit then
# take about 20 minutes. On a machine that has only the served models, `train --from-served` continues one at
# its recipe's warm restart instead of from scratch.
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
  # ResNet50 and DenseNet121 train at 112 px and are served at 128 and 160 px, the sizes validation tiles chose
  # (benchmarks/input_size_on_val.py).
  .venv/bin/python -m lungfake serve-size --arch resnet50 --input-size 128 >> "$runs/train_all.log" 2>&1
  .venv/bin/python -m lungfake serve-size --arch densenet121 --input-size 160 >> "$runs/train_all.log" 2>&1
  # in this order: the screen is fitted on what the models see after scale normalisation, and evaluate reads the screen
  .venv/bin/python -m lungfake scale-fit >> "$runs/train_all.log" 2>&1
  .venv/bin/python -m lungfake ood-fit >> "$runs/train_all.log" 2>&1
  .venv/bin/python -m lungfake evaluate >> "$runs/train_all.log" 2>&1
  .venv/bin/python -m lungfake explanations >> "$runs/train_all.log" 2>&1
fi
