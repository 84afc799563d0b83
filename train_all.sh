#!/usr/bin/env bash
# Train the served (grouped) pair, then the random-split pair, each resumable; logs under runs/.
set -u
cd "$(dirname "$0")"
mkdir -p runs
export LC25000_DIR="${LC25000_DIR:-../shared/data/lc25000_lung}"
for job in "mobilenetv2 grouped" "resnet50 grouped" "mobilenetv2 random" "resnet50 random"; do
  set -- $job
  .venv/bin/python -m lungfake train --arch "$1" --split "$2" >> "runs/$1_$2.log" 2>&1 || echo "train $1 $2 exited $?" >> runs/train_all.log
  echo "$(date -u +%FT%TZ) finished $1 $2" >> runs/train_all.log
done
