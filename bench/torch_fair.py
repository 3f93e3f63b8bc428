"""The FAIR UNet with the official state_dict names (fair-reference.md section 2) and FAIR's training
loss (MSE + 1 - DRAEM's SSIM, L read from the prediction) in PyTorch, shared by the bench tools that
hold fairline's engines to PyTorch (torch_fair_grads.py, torch_replay.py)."""
import json
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

def cbr(i, o):
    return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]


def blk(i, o, m=None):
    m = m or o
    return nn.Sequential(*cbr(i, m), *cbr(m, o))


def up(ch):
    return nn.Sequential(nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True), *cbr(ch, ch))


class Encoder(nn.Module):
    def __init__(s, c):
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
    def __init__(s, c):
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
    def __init__(s, c):
        super().__init__()
        s.encoder, s.decoder = Encoder(c), Decoder(c)

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


def read_weights(folder):
    """state_dict tensors from fairline's import format (weights.json + the float32 file it names)."""
    meta = json.load(open(f'{folder}/weights.json'))
    flat = np.fromfile(f"{folder}/{meta.get('file', 'weights.f32')}", dtype='<f4')
    return {k: flat[e['offset']:e['offset'] + e['length']].reshape(e['shape']) for k, e in meta['tensors'].items()}


def write_weights(folder, state, **meta):
    """A state_dict (num_batches_tracked left out) in fairline's import format; `meta` adds fields
    such as base_width, in_channels, size."""
    import os
    os.makedirs(folder, exist_ok=True)
    entries, parts, off = {}, [], 0
    for k, v in state.items():
        if k.endswith('num_batches_tracked'):
            continue
        a = v.detach().cpu().numpy().astype('<f4')
        entries[k] = {'shape': list(a.shape), 'offset': off, 'length': int(a.size)}
        off += int(a.size)
        parts.append(a.ravel())
    np.concatenate(parts).tofile(f'{folder}/weights.f32')
    json.dump({'file': 'weights.f32', **meta, 'tensors': entries}, open(f'{folder}/weights.json', 'w'))
