#!/usr/bin/python3
"""Train FAIR in PyTorch on the batches and initial weights a fairline run recorded
(bench/record_batches.mjs), with the official optimiser: Adam (lr 1e-4, betas 0.9 / 0.999, eps 1e-8),
MultiStepLR at 0.8 and 0.9 of the epochs (gamma 0.2) stepped per epoch, BN momentum 0.1; write the
result in fairline's import format, so `fairline import` + `fairline eval` score it like a fairline
model. The same batches through both engines separate what the training engine does from what the
data does. Usage: /usr/bin/python3 bench/torch_replay.py RECORD_DIR OUT_DIR [--threads 2]"""
import json, sys, time
import numpy as np
import torch
from torch_fair import Net, fair_loss, read_weights, write_weights

rec, out = sys.argv[1], sys.argv[2]
torch.set_num_threads(int(sys.argv[sys.argv.index('--threads') + 1]) if '--threads' in sys.argv else 2)
index = [json.loads(line) for line in open(f'{rec}/index.jsonl')]
init = read_weights(f'{rec}/init')
width = init['encoder.block1.0.weight'].shape[0]
net = Net(width)
sd = net.state_dict()
for k in sd:
    if not k.endswith('num_batches_tracked'):
        sd[k] = torch.from_numpy(init[k].copy())
net.load_state_dict(sd)
net.train()
epochs = max(b['epoch'] for b in index) + 1
opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[0.8 * epochs, 0.9 * epochs], gamma=0.2)
xs = np.memmap(f'{rec}/x.bin', dtype='<f4', mode='r')
ts = np.memmap(f'{rec}/t.bin', dtype='<f4', mode='r')
ox = ot = 0
t0 = time.time()
for ep in range(epochs):
    total, count = 0.0, 0
    for b in (b for b in index if b['epoch'] == ep):
        n, S = b['n'], b['size']
        kx, kt = n * S * S * b['in'], n * S * S * b['out']
        x = torch.from_numpy(np.array(xs[ox:ox + kx])).reshape(n, S, S, b['in']).permute(0, 3, 1, 2).contiguous()
        t = torch.from_numpy(np.array(ts[ot:ot + kt])).reshape(n, S, S, b['out']).permute(0, 3, 1, 2).contiguous()
        ox, ot = ox + kx, ot + kt
        opt.zero_grad()
        loss = fair_loss(net(x), t)
        loss.backward()
        opt.step()
        total, count = total + loss.item(), count + 1
    sched.step()
    print(json.dumps({'epoch': ep + 1, 'loss': total / count, 'lr': opt.param_groups[0]['lr'], 'seconds': round(time.time() - t0, 1)}), flush=True)
write_weights(out, net.state_dict(), base_width=width, in_channels=index[0]['in'], size=index[0]['size'])
print(f'wrote {out}/weights.json ({time.time() - t0:.0f} s)')
