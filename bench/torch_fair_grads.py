#!/usr/bin/python3
"""Float64 reference for bench/grad_check.ts: the FAIR training step (train-mode BN, MSE + 1 - SSIM)
in PyTorch with the official state_dict names (fair-reference.md section 2), in float64 and float32,
on the batch and weights grad_check.ts wrote. Prints each engine's worst |g - g64| / max|g64| per
parameter (conv biases directly before a BN are left out: their true gradient is 0, any value is noise).
Usage: /usr/bin/python3 bench/torch_fair_grads.py DIR [--all]"""
import json, sys
import numpy as np
import torch
from torch_fair import Net, fair_loss

D = sys.argv[1] if len(sys.argv) > 1 else '/tmp/fairline-gradcheck'
meta = json.load(open(f'{D}/index.json'))
idx, c = meta['tensors'], meta['width']


def load(n):
    return np.fromfile(f'{D}/{n}.bin', dtype=np.float32).reshape(idx[n])


def grads(dtype):
    net = Net(c).to(dtype)
    sd = net.state_dict()
    for k in sd:
        if not k.endswith('num_batches_tracked'):
            sd[k] = torch.from_numpy(load(f'w_{k}')).to(dtype).reshape(sd[k].shape)
    net.load_state_dict(sd)
    net.train()
    x = torch.from_numpy(load('x')).permute(0, 3, 1, 2).to(dtype)
    t = torch.from_numpy(load('t')).permute(0, 3, 1, 2).to(dtype)
    loss = fair_loss(net(x), t)
    loss.backward()
    return loss.item(), {k: p.grad.detach().double().numpy() for k, p in net.named_parameters()}


torch.set_num_threads(2)
loss64, ref = grads(torch.float64)
loss32, g32 = grads(torch.float32)
before_bn = {k for k in ref if k.endswith('.bias') and f"w_{k.rsplit('.', 2)[0]}.{int(k.split('.')[-2]) + 1}.running_mean" in idx}
engines = {'pytorch_f32': g32}
for e in meta['engines']:
    engines[e] = {k: load(f'g_{e}_{k}').astype(np.float64).reshape(ref[k].shape) for k in ref if f'g_{e}_{k}' in idx}
print(json.dumps({'loss_f64': loss64, 'loss_pytorch_f32': loss32, **{f'loss_{k}': v for k, v in meta['losses'].items()}}))
print(f"{'parameter':30s} " + ' '.join(f'{e:>14s}' for e in engines))
worst = {e: (0.0, '') for e in engines}
for k in ref:
    if k in before_bn:
        continue
    m = np.abs(ref[k]).max()
    errs = [np.abs(g[k] - ref[k]).max() / m for g in engines.values()]
    for e, err in zip(engines, errs):
        if err > worst[e][0]:
            worst[e] = (err, k)
    if '--all' in sys.argv:
        print(f'{k:30s} ' + ' '.join(f'{err:14.2e}' for err in errs))
print('worst |g - g64| / max|g64| per engine:')
for e, (err, k) in worst.items():
    print(f'  {e:14s} {err:.2e}  ({k})')
