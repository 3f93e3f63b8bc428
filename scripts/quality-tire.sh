#!/usr/bin/env bash
# Quality check of a training engine on a hard real set (issue 11): train FAIR on
# ../shared/data/tire_mvtec3d (MVTec 3D-AD tire, RGB; CC BY-NC-SA, read in place, never copied)
# at the official reference settings (c = 8, 20 epochs, 256 px, batch 8, no DTD textures), then
# evaluate each model on the test split (image AUROC, pixel AUROC, AUPRO) and print one summary
# line per run with its training time.
#   scripts/quality-tire.sh [--engine onnx|tfjs] [--seeds "0 1 2"] [--out DIR] [--epochs 20]
# Each run keeps a checkpoint per epoch: the same command resumes an interrupted run.
set -euo pipefail
cd "$(dirname "$0")/.."
engine=onnx; seeds="0 1 2"; out=runs/quality-tire; epochs=20
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
data=${TIRE_DATA:-../shared/data/tire_mvtec3d}
[ -d "$data/tire" ] || { echo "no tire data set at $data (set TIRE_DATA)" >&2; exit 2; }
mkdir -p "$out"
for seed in $seeds; do
  dir="$out/$engine-s$seed"
  if [ -f "$dir/model.json" ]; then
    echo "quality: $dir already trained"
  else
    resume=(); [ -f "$dir/checkpoint/checkpoint.json" ] && resume=(--resume)
    node bin/fairline.js train --data "$data" --category tire --out "$dir" --epochs "$epochs" --width 8 --size 256 \
      --batch 8 --seed "$seed" --engine "$engine" --json "${resume[@]}" 2>&1 | tee "$dir.train.log" | grep -E '"event":"epoch"|model:|error' || true
  fi
  node bin/fairline.js eval --data "$data" --category tire --model "$dir" --report "$dir/report" --pictures none --json > "$dir.eval.log" 2>&1
  node -e '
    const fs = require("fs"); const [dir, engine, seed] = process.argv.slice(1);
    const r = JSON.parse(fs.readFileSync(dir + "/report/report.json", "utf8"));
    const m = JSON.parse(fs.readFileSync(dir + "/model.json", "utf8"));
    const row = (r.categories ?? r.results ?? [r])[0] ?? r;
    const pick = (k) => row[k] ?? row.metrics?.[k];
    console.log(JSON.stringify({ engine, seed: +seed, image_AUROC: pick("image_AUROC"), pixel_AUROC: pick("pixel_AUROC"), AUPRO: pick("AUPRO"),
      train_seconds: m.training?.seconds, trained_on: m.training?.backend }));
  ' "$dir" "$engine" "$seed" | tee -a "$out/summary.jsonl"
done
