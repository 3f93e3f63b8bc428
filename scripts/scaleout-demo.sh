#!/usr/bin/env bash
# Scale-out demo on one machine: a private nats-server with JetStream, two `fairline worker`s and
# one `fairline ingest` of an image folder (looped to COUNT frames). Prints the ingest summary,
# both workers' counters and the number of verdicts in the audit stream.
#
#   scripts/scaleout-demo.sh MODEL_DIR IMAGE_DIR [COUNT=200]
#
# The model needs a calibrated threshold (fairline calibrate). Needs nats-server on PATH.
set -euo pipefail
model=${1:?usage: $0 MODEL_DIR IMAGE_DIR [COUNT]}
images=${2:?usage: $0 MODEL_DIR IMAGE_DIR [COUNT]}
count=${3:-200}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
port=$(( 20000 + RANDOM % 20000 ))
url="nats://127.0.0.1:$port"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

nats-server -a 127.0.0.1 -p "$port" -js -sd "$work/js" >"$work/nats.log" 2>&1 &
nats_pid=$!
pids+=("$nats_pid")
sleep 1

cd "$root"
for w in w1 w2; do
  node bin/fairline.js worker --nats "$url" --line demo --model "$model" --name "$w" --threads 1 \
    >"$work/$w.json" 2>"$work/$w.log" &
  pids+=($!)
  eval "pid_$w=$!"
done
# Wait until both workers are ready (model loaded, consumer created).
for _ in $(seq 1 120); do
  if grep -q ready "$work/w1.log" && grep -q ready "$work/w2.log"; then break; fi
  sleep 0.5
done

node bin/fairline.js ingest --nats "$url" --line demo --camera cam0 --source "$images" --loop --count "$count"

# Let the workers finish the queue, then stop them gracefully (SIGTERM: finish batch, ack, drain).
node --import tsx -e "
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: '$url' });
  const jsm = await jetstreamManager(nc);
  for (;;) {
    const v = (await jsm.streams.info('FAIRLINE_VERDICTS_demo')).state.messages;
    const q = (await jsm.streams.info('FAIRLINE_FRAMES_demo')).state.messages;
    if (q === 0 && v >= $count) { console.log('audit stream FAIRLINE_VERDICTS_demo:', v, 'verdicts'); break; }
    await new Promise((r) => setTimeout(r, 200));
  }
  await nc.close();
"
kill -TERM "$pid_w1" "$pid_w2"
wait "$pid_w1" "$pid_w2" || true
echo "w1: $(cat "$work/w1.json")"
echo "w2: $(cat "$work/w2.json")"
