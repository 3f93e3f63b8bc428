#!/usr/bin/env bash
# Re-creates models/hazelnut-demo, the model `fairline demo` ships with, from the sample data in
# data/hazelnut_toy (CC BY 4.0). Small on purpose (c = 8, 270k parameters, 1 MB); ~10 minutes on
# 2 cores with the wasm backend. Its threshold is the largest training-image score ('train-max').
set -euo pipefail
cd "$(dirname "$0")/.."
node bin/fairline.js train --data data/hazelnut_toy --category hazelnut --out models/hazelnut-demo \
  --width 8 --size 256 --epochs 40 --batch 4 --lr 0.001 --seed 1 --json "$@"
rm -rf models/hazelnut-demo/checkpoint
