#!/usr/bin/env bash
# The real-data table of every dense task (issue 15): each task's federation built from ../shared/data/real
# (one source per site), the strategies, each site alone and all sites pooled trained to convergence, 3 seeds,
# paired differences; OmniFM with and without its spectral path (off by default since 2026-12-03, measured on
# classification only). One benchmarks/federated_accuracy.py run per federation; figures under runs/benchmarks/real_<name>/.
# Usage: bash benchmarks/real_data_tasks.sh [NAME ...]   (default: every federation below, in this order)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
REAL=${REAL:-../shared/data/real}
read -r -a SEED_LIST <<< "${SEEDS:-0 1 2}"
COMMON=(--clients 4 --rounds 5 --local-epochs 2 --participation 1.0 --seeds "${SEED_LIST[@]}"
        --strategies local fedavg fedbn omnifm --variants benchmarks/variants/spectral_path.json
        --references --reference-epochs 15 --patience 3)
# The segmentation sites hold 2-37 training slices, one or two batches: 2 epochs a round would be a handful of
# optimizer steps in the whole run, so they train 10 epochs a round. Their references train the full 60-epoch cap
# and keep the best validation epoch (patience = cap): validation Dice sits at 0 for tens of epochs before
# the lesion appears, so patience 10 stopped them at epoch 11-17 (a later option wins over COMMON's).
SMALL_SITES="--local-epochs 10 --reference-epochs 60 --patience 60"
declare -A FEDERATION=(
  [fusion]="--task fusion --federation-data $REAL/fusion --image-size 32"
  [vqa]="--task vqa --federation-data $REAL/segmentation --image-size 32"
  [segmentation_lesion]="--task segmentation --federation-data $REAL/segmentation/pyradiomics_* --image-size 64 $SMALL_SITES"
  [super_resolution_x2]="--task super_resolution --federation-data $REAL/super_resolution --image-size 64"
  [segmentation_organ]="--task segmentation --federation-data $REAL/segmentation/totalseg_ct --image-size 64 $SMALL_SITES"
  [super_resolution_x4]="--task super_resolution --federation-data $REAL/super_resolution --image-size 64 --bundle-overrides {\"scale\":4}"
)
ORDER=(fusion vqa segmentation_lesion super_resolution_x2 segmentation_organ super_resolution_x4)
for name in "${@:-${ORDER[@]}}"; do
  read -r -a options <<< "${FEDERATION[$name]}"
  start=$(date +%s)
  "$PY" benchmarks/federated_accuracy.py "${COMMON[@]}" "${options[@]}" --out "runs/benchmarks/real_$name"
  echo "$name: $(( $(date +%s) - start )) s" | tee -a runs/benchmarks/real_data_tasks_times.txt
done
