#!/usr/bin/python3
"""Float64 reference for bench/grad_check.ts: the FAIR training step (train-mode BN, MSE + 1 - SSIM)
in PyTorch with the official state_dict names (fair-reference.md section 2), in float64 and float32,
on the batch and weights grad_check.ts wrote. Prints each engine's worst |g - g64| / max|g64| per
parameter (conv biases directly before a BN are left out: their true gradient is 0, any value is noise).
Usage: /usr/bin/python3 bench/torch_fair_grads.py DIR [--all]"""
import json, sys
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

D = sys.argv[1] if len(sys.argv) > 1 else '/tmp/fairline-gradcheck'
meta = json.load(open(f'{D}/index.json'))
idx, c = meta['tensors'], meta['width']


def load(n):
    return np.fromfile(f'{D}/{n}.bin', dtype=np.float32).reshape(idx[n])


def cbr(i, o):
    return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]


def blk(i, o, m=None):
    m = m or o
    return nn.Sequential(*cbr(i, m), *cbr(m, o))


def up(ch):
    return nn.Sequential(nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True), *cbr(ch, ch))


class Encoder(nn.Module):
    def __init__(s):
        super().__init__()
        s.block1, s.block2, s.block3 = blk(1, c), blk(c, 2 * c), blk(2 * c, 4 * c)
        s.block4, s.block5 = blk(4 * c, 8 * c), blk(8 * c, 8 * c)

    def forward(s, x):
        b1 = s.block1(x)
        b2 = s.block2(F.max_pool2d(b1, 2))
        b3 = s.block3(F.max_pool2d(b2, 2))
        b4 = s.block4(F.max_pool2d(b3, 2))
        return b1, b2, b3, b4, s.block5(F.max_pool2d(b4, 2))


class Decoder(nn.Module):
    def __init__(s):
        super().__init__()
        s.up1, s.db1, s.up2, s.db2 = up(8 * c), blk(8 * c, 4 * c, 8 * c), up(4 * c), blk(4 * c, 2 * c, 4 * c)
        s.up3, s.db3, s.up4, s.db4 = up(2 * c), blk(2 * c, c, 2 * c), up(c), blk(c, c)
        s.fin_out = nn.Sequential(nn.Conv2d(c, 3, 3, padding=1))

    def forward(s, b1, b2, b3, b4, b5):
        x = s.db1(s.up1(b5) + b4)
        x = s.db2(s.up2(x) + b3)
        x = s.db3(s.up3(x) + b2)
        return s.fin_out(s.db4(s.up4(x) + b1))


class Net(nn.Module):
    def __init__(s):
        super().__init__()
        s.encoder, s.decoder = Encoder(), Decoder()

    def forward(s, x):
        return s.decoder(*s.encoder(x))


def fair_loss(pred, target):
    max_val = 255 if torch.max(pred) > 128 else 1
    min_val = -1 if torch.min(pred) < -0.5 else 0
    L = max_val - min_val
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    g = torch.exp(-((torch.arange(11, dtype=pred.dtype) - 5) ** 2) / (2 * 1.5 ** 2))
    g = g / g.sum()
    w = (g[:, None] @ g[None, :]).expand(3, 1, 11, 11).contiguous()
    f = lambda t: F.conv2d(t, w, padding=5, groups=3)
    mu1, mu2 = f(pred), f(target)
    s1, s2, s12 = f(pred * pred) - mu1 * mu1, f(target * target) - mu2 * mu2, f(pred * target) - mu1 * mu2
    ssim = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 * mu1 + mu2 * mu2 + c1) * (s1 + s2 + c2))
    return F.mse_loss(pred, target) + (1 - ssim.mean())


def grads(dtype):
    net = Net().to(dtype)
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
