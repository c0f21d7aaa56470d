#!/usr/bin/python3
"""Golden fixtures for core/kernel: PyTorch 1.13 conv2d, batch norm and
pooling, forward and backward, on small random inputs.

Run from the repository root with Debian's python (torch):

    /usr/bin/python3 tools/golden/gen_kernel.py

It writes core/kernel/testdata/kernel_{conv,bn,pool}.safetensors. Each case
is a group of tensors named "<case>.<tensor>"; the metadata entry "<case>"
holds a JSON description of the op (shapes, stride, padding, eps, momentum)
so that the Go test replays it without a second parameter table. Backward
tensors come from autograd with the output gradient "<case>.dy".
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

OUT = os.path.join("core", "kernel", "testdata")


def conv_cases():
    # (name, N, C, H, W, K, R, S, stride, pad)
    return [
        ("conv_s1_3x3", 2, 3, 7, 6, 4, 3, 3, 1, 1),
        ("conv_s2_3x3", 3, 4, 9, 8, 5, 3, 3, 2, 1),
        ("conv_s2_1x1", 2, 6, 8, 8, 4, 1, 1, 2, 0),
        ("conv_s1_5x5_p2", 1, 2, 6, 7, 3, 5, 5, 1, 2),
    ]


def gen_conv(out, meta):
    for name, n, c, h, w, k, r, s, stride, pad in conv_cases():
        x = torch.randn(n, c, h, w, requires_grad=True)
        wt = torch.randn(k, c, r, s, requires_grad=True)
        y = F.conv2d(x, wt, stride=stride, padding=pad)
        dy = torch.randn_like(y)
        y.backward(dy)
        out.update({f"{name}.x": x, f"{name}.w": wt, f"{name}.y": y, f"{name}.dy": dy,
                    f"{name}.dx": x.grad, f"{name}.dw": wt.grad})
        meta[name] = json.dumps({"N": n, "C": c, "H": h, "W": w, "K": k, "R": r, "S": s,
                                 "stride": stride, "pad": pad})


def gen_bn(out, meta):
    # (name, shape, affine): BatchNorm1d on [N, C] and BatchNorm2d on NCHW,
    # in training mode, then one eval-mode forward with the updated stats.
    for name, shape, affine in [("bn2d", (4, 3, 5, 5), True), ("bn1d", (8, 5), True),
                                ("bn2d_noaffine", (3, 2, 4, 3), False)]:
        c = shape[1]
        bn = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(
            c, eps=1e-5, momentum=0.1, affine=affine)
        with torch.no_grad():
            bn.running_mean.copy_(torch.randn(c))
            bn.running_var.copy_(torch.rand(c) + 0.5)
            if affine:
                bn.weight.copy_(torch.randn(c))
                bn.bias.copy_(torch.randn(c))
        rm0, rv0 = bn.running_mean.clone(), bn.running_var.clone()
        x = (torch.randn(*shape) * 2 + 0.5).requires_grad_(True)
        bn.train()
        y = bn(x)
        dy = torch.randn_like(y)
        y.backward(dy)
        bn.eval()
        with torch.no_grad():
            y_eval = bn(x)
        t = {"x": x, "y": y, "dy": dy, "dx": x.grad, "rm0": rm0, "rv0": rv0,
             "rm1": bn.running_mean, "rv1": bn.running_var, "y_eval": y_eval}
        if affine:
            t.update({"gamma": bn.weight, "beta": bn.bias,
                      "dgamma": bn.weight.grad, "dbeta": bn.bias.grad})
        for k, v in t.items():
            out[f"{name}.{k}"] = v
        meta[name] = json.dumps({"shape": list(shape), "affine": affine, "eps": 1e-5, "momentum": 0.1})


def gen_pool(out, meta):
    # (name, kind, N, C, H, W, k, stride, pad)
    for name, kind, n, c, h, w, k, stride, pad in [
            ("maxpool_k3s2p1", "max", 2, 3, 7, 7, 3, 2, 1),
            ("maxpool_k2s2", "max", 1, 2, 6, 5, 2, 2, 0),
            ("avgpool_k3s2p1", "avg", 2, 3, 7, 7, 3, 2, 1),
            ("avgpool_k3s1p1", "avg", 1, 2, 5, 6, 3, 1, 1)]:
        x = torch.randn(n, c, h, w, requires_grad=True)
        if kind == "max":
            y, idx = F.max_pool2d(x, k, stride, pad, return_indices=True)
            out[f"{name}.argmax"] = idx.to(torch.int64)
        else:
            y = F.avg_pool2d(x, k, stride, pad, count_include_pad=True)
        dy = torch.randn_like(y)
        y.backward(dy)
        out.update({f"{name}.x": x, f"{name}.y": y, f"{name}.dy": dy, f"{name}.dx": x.grad})
        meta[name] = json.dumps({"kind": kind, "N": n, "C": c, "H": h, "W": w, "k": k,
                                 "stride": stride, "pad": pad})


def main():
    os.makedirs(OUT, exist_ok=True)
    for fname, gen in [("kernel_conv", gen_conv), ("kernel_bn", gen_bn), ("kernel_pool", gen_pool)]:
        torch.manual_seed(0)
        out, meta = {}, {"generator": "tools/golden/gen_kernel.py", "torch": torch.__version__}
        gen(out, meta)
        path = os.path.join(OUT, fname + ".safetensors")
        st.write(path, out, meta)
        print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
