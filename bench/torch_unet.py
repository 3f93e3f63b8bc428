#!/usr/bin/python3
"""Peer benchmark: FAIR's UNet in PyTorch on this machine's CPU cores.

The network follows ../reference/fair-reference.md section 2 (5 encoder stages, additive
skips, bilinear align_corners upsampling + conv, BN + ReLU, 1 input / 3 output channels).
It is the speed a PyTorch user of the method gets here; fairline's benchmark compares
against it in the same run.

Needs Debian's python3-torch (apt-get install python3-torch); run with /usr/bin/python3.
Usage: torch_unet.py --width 32 --size 256 --batch 8 --mode infer|train [--threads 2] [--seconds 20]
                     [--loss fair|mse]
Prints one JSON line: {"impl":"pytorch-cpu", ..., "images_per_s": X}

(fairline additions: --loss fair trains with FAIR's MSE + (1 - SSIM) like fairline's Trainer
(DRAEM SSIM: 11x11 Gaussian window, sigma 1.5, per channel, zero padding); --loss mse is the
original peer. The JSON also reports the process's peak RSS.)
"""
import argparse, json, resource, time
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def block(cin, cout, mid=None):
    mid = mid or cout
    return nn.Sequential(*conv_bn_relu(cin, mid), *conv_bn_relu(mid, cout))


class Up(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Sequential(*conv_bn_relu(ch, ch))

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))


class FairUNet(nn.Module):
    def __init__(self, c, cin=1, cout=3):
        super().__init__()
        self.enc = nn.ModuleList([block(cin, c), block(c, 2 * c), block(2 * c, 4 * c),
                                  block(4 * c, 8 * c), block(8 * c, 8 * c)])
        self.ups = nn.ModuleList([Up(8 * c), Up(4 * c), Up(2 * c), Up(c)])
        self.dec = nn.ModuleList([block(8 * c, 4 * c, 8 * c), block(4 * c, 2 * c, 4 * c),
                                  block(2 * c, c, 2 * c), block(c, c)])
        self.out = nn.Conv2d(c, cout, 3, padding=1)

    def forward(self, x):
        skips = []
        for i, enc in enumerate(self.enc):
            x = enc(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, dec, skip in zip(self.ups, self.dec, reversed(skips[:-1])):
            x = dec(up(x) + skip)
        return self.out(x)


def _gauss_window(channels, size=11, sigma=1.5):
    g = torch.exp(-((torch.arange(size, dtype=torch.float32) - size // 2) ** 2) / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] @ g[None, :]).expand(channels, 1, size, size).contiguous()


def fair_loss(pred, target, window):
    """MSE + (1 - SSIM) as FAIR's train.py / DRAEM's loss.py (L from the prediction's range)."""
    max_val = 255 if torch.max(pred) > 128 else 1
    min_val = -1 if torch.min(pred) < -0.5 else 0
    L = max_val - min_val
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    ch = pred.shape[1]
    f = lambda t: F.conv2d(t, window, padding=5, groups=ch)
    mu1, mu2 = f(pred), f(target)
    s1 = f(pred * pred) - mu1 * mu1
    s2 = f(target * target) - mu2 * mu2
    s12 = f(pred * target) - mu1 * mu2
    ssim = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 * mu1 + mu2 * mu2 + c1) * (s1 + s2 + c2))
    return F.mse_loss(pred, target) + (1 - ssim.mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--mode", choices=["infer", "train"], default="infer")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--loss", choices=["fair", "mse"], default="mse")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = FairUNet(a.width)
    x = torch.randn(a.batch, 1, a.size, a.size)
    y = torch.rand(a.batch, 3, a.size, a.size)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, eps=1e-8)
    window = _gauss_window(3)

    def step():
        if a.mode == "infer":
            with torch.no_grad():
                net(x)
        else:
            out = net(x)
            loss = fair_loss(out, y, window) if a.loss == "fair" else F.mse_loss(out, y)
            opt.zero_grad(); loss.backward(); opt.step()

    if a.mode == "infer":
        net.eval()
    step()  # warm-up
    n, t0 = 0, time.perf_counter()
    while True:
        step(); n += 1
        dt = time.perf_counter() - t0
        if dt >= a.seconds or n >= 1000:
            break
    params = sum(p.numel() for p in net.parameters())
    print(json.dumps({"impl": "pytorch-cpu", "torch": torch.__version__, "mode": a.mode, "width": a.width,
                      "size": a.size, "batch": a.batch, "threads": a.threads, "params": params, "loss": a.loss if a.mode == "train" else None,
                      "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "iterations": n, "seconds": round(dt, 2), "images_per_s": round(n * a.batch / dt, 3)}))


if __name__ == "__main__":
    main()
