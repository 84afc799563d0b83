#!/usr/bin/env bash
# Train the served (grouped) pair, then the random-split pair, in the background-friendly way:
# each run checkpoints every epoch and resumes when this script is run again. Logs go beside the checkpoints.
# Usage: nohup bash scripts/train_all.sh &
set -u
cd "$(dirname "$0")/.."
export LC25000_DIR="${LC25000_DIR:-$(cd .. && pwd)/shared/data/lc25000_lung}"
runs="${LUNGFAKE_RUNS_DIR:-$HOME/.cache/lungfake/runs}"
mkdir -p "$runs"
for job in "mobilenetv2 grouped" "resnet50 grouped" "mobilenetv2 random" "resnet50 random"; do
  set -- $job
  if .venv/bin/python -m lungfake train --arch "$1" --split "$2" >> "$runs/$1_$2.log" 2>&1; then
    echo "$(date -u +%FT%TZ) finished $1 $2" >> "$runs/train_all.log"
  else
    echo "$(date -u +%FT%TZ) $1 $2 exited with $?" >> "$runs/train_all.log"
  fi
done
.venv/bin/python -m lungfake evaluate >> "$runs/train_all.log" 2>&1
