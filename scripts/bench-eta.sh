#!/usr/bin/env bash
# The ETA benchmark (issue #9): simulated lunches in San Francisco fill the ETA log; a model
# is trained on the first days and judged on a day it did not train on (another seed: other
# restaurants, kitchens, drivers and customers on the same map). Each day: 11:00-14:00 of
# orders, then up to an hour to deliver what is left. Prints the training run's hold-out
# figures, then the test day's; writes evaluation.json and predicted-vs-actual.png.
# About 40 minutes of wall time at the default speed on a 2-core machine.
set -euo pipefail
OTW=${ONTHEWAY:-.venv/bin/ontheway}
TRAIN_DAYS=${ETA_TRAIN_DAYS:-3}
SPEED=${ETA_SPEED:-30}
OUT=${ETA_OUT:-.ontheway/runs/eta-bench-$(date -u +%Y%m%dT%H%M%S)}
DAY=(--region sf --drivers 180 --orders-per-hour 200 --duration 3h --drain 1h --start 11:00
     --speed "$SPEED")
mkdir -p "$OUT"
$OTW roads import --region sf tests/data/osm/san-francisco-downtown-drive.osm.bz2 >/dev/null
START=$(date -u +%Y-%m-%dT%H:%M:%S)
for day in $(seq 1 "$TRAIN_DAYS"); do
  echo "== training day $day of $TRAIN_DAYS"
  $OTW simulate "${DAY[@]}" --seed "$day" --out "$OUT/day$day" | tail -n 25
done
echo "== training on the deliveries placed since $START"
$OTW eta train --region sf --after "$START" --out "$OUT/train"
echo "== a day the model did not train on"
TEST_START=$(date -u +%Y-%m-%dT%H:%M:%S)
$OTW simulate "${DAY[@]}" --seed 1000 --out "$OUT/test-day" | tail -n 25
$OTW eta evaluate --region sf --after "$TEST_START" --out "$OUT/evaluate"
echo "results: $OUT"
