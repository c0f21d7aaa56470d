#!/usr/bin/python3
"""Golden fixtures for core/nn: PyTorch 1.13 layers and the W1/W2 workload
models (tools: Debian's torch, /usr/bin/python3).

Run from the repository root:

    /usr/bin/python3 tools/golden/gen_nn.py

It writes core/nn/testdata/{layers,model_w1,model_w2}.safetensors and
core/nn/testdata/state_keys.json (state_dict names, shapes and dtypes of
the workload models and a few variants, for the Go naming test).

layers.safetensors: small single-layer cases, everything stored in full.
  Keys are "<case>/<what>": x (input), out, gout (upstream gradient: the
  backward pass computes d/d(.) of sum(out * gout)), gx (input gradient),
  p/<name> (parameters and buffers before the forward, PyTorch state_dict
  names), g/<name> (parameter gradients), after/<name> (buffers after the
  forward). Metadata "cases" is a JSON map case -> layer configuration.

model_w<k>.safetensors: backbone -> projector -> predictor of the workload
  (build_models in /work/shared/bench/torch_baseline.py), batch 8, train
  mode. The weights of these models are MBs, so both sides generate them
  from the deterministic hash formula below (a data source, not the thing
  under test) and the fixture stores: (a) one view x, backward of
  sum(p * G): z and p in full; the backbone feature, the gradients of x,
  z and every parameter, and the running statistics after the forward as
  an L2 norm ("<key>/norm") plus N_SAMPLES values ("<key>/val") at indices
  given by a formula (sample_indices); num_batches_tracked in full.
  (b) the SimSiam loss of two views x1, x2 on fresh models: the loss and
  every parameter gradient (norm + samples). "param/<name>" holds the
  first 8 values of every parameter, to check the hash formula itself.

Hash formula (implemented identically in core/nn/init.go: Hash32, HashUniform, HashInit, SampleIndices):
  h0  = FNV-1a 32-bit of the UTF-8 name
  x   = h0 XOR (i * 0x9E3779B9 mod 2^32)          for element index i
  x  ^= x >> 16; x *= 0x85EBCA6B; x ^= x >> 13; x *= 0xC2B2AE35; x ^= x >> 16
        (murmur3 fmix32, all mod 2^32)
  u   = (x >> 8) / 2^24                            in [0, 1), exact in float64
  v   = float32(c + (2u - 1) * b)                  float64 arithmetic, one rounding
  with (c, b) = (0, 1/sqrt(fan_in)) for Linear/Conv weights and biases
  (PyTorch's default bound), (1, 0.25) for BN weight, (0, 0.25) for BN bias,
  (0, 0.5) / (1, 0.5) for running mean / var when a case needs them set,
  (0, sqrt(3)) for inputs (unit variance), (0, 1) for upstream gradients.
  Names are the state_dict names prefixed by the part ("backbone.0.weight")
  and "input.x", "input.x1", "input.x2", "upstream" for data.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import st  # noqa: E402

OUT = os.path.join("core", "nn", "testdata")
BASELINE = "/work/shared/bench"
N_SAMPLES = 256
M32 = np.uint64(0xFFFFFFFF)


# ----------------------------------------------------------------------------
# hash formula
# ----------------------------------------------------------------------------
def fnv1a32(s):
    h = 0x811C9DC5
    for c in s.encode():
        h ^= c
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def hash32(name, n):
    """The 32-bit hashes of (name, i) for i in [0, n), as uint64."""
    idx = np.arange(n, dtype=np.uint64)
    x = np.uint64(fnv1a32(name)) ^ ((idx * np.uint64(0x9E3779B9)) & M32)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x85EBCA6B)) & M32
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(0xC2B2AE35)) & M32
    x ^= x >> np.uint64(16)
    return x


def hash_uniform(name, shape, center, bound):
    n = int(np.prod(shape)) if len(shape) else 1
    x = hash32(name, n)
    u = (x >> np.uint64(8)).astype(np.float64) / float(1 << 24)
    return (center + (2.0 * u - 1.0) * bound).astype(np.float32).reshape(shape)


def hash_init(module, prefix, buffers=False):
    """Set every parameter (and optionally BN running stats) from the hash."""
    with torch.no_grad():
        for mname, m in module.named_modules():
            p = prefix + (mname + "." if mname else "")
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                fan_in = m.weight[0].numel()
                b = 1.0 / math.sqrt(fan_in)
                m.weight.copy_(torch.from_numpy(hash_uniform(p + "weight", tuple(m.weight.shape), 0.0, b)))
                if m.bias is not None:
                    m.bias.copy_(torch.from_numpy(hash_uniform(p + "bias", tuple(m.bias.shape), 0.0, b)))
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.affine:
                    m.weight.copy_(torch.from_numpy(hash_uniform(p + "weight", tuple(m.weight.shape), 1.0, 0.25)))
                    m.bias.copy_(torch.from_numpy(hash_uniform(p + "bias", tuple(m.bias.shape), 0.0, 0.25)))
                if buffers:
                    m.running_mean.copy_(torch.from_numpy(hash_uniform(p + "running_mean", tuple(m.running_mean.shape), 0.0, 0.5)))
                    m.running_var.copy_(torch.from_numpy(hash_uniform(p + "running_var", tuple(m.running_var.shape), 1.0, 0.5)))
            elif isinstance(m, BiasOnly):
                m.bias.copy_(torch.from_numpy(hash_uniform(p + "bias", tuple(m.bias.shape), 0.0, 0.25)))


def sample_indices(name, n):
    """N_SAMPLES distinct indices spread over [0, n) (all of them if n is small):
    i_k = k * step + hash32("sample." + name, k) mod step, step = n div N_SAMPLES."""
    if n <= N_SAMPLES:
        return np.arange(n, dtype=np.int64)
    step = n // N_SAMPLES
    k = np.arange(N_SAMPLES, dtype=np.int64)
    return k * step + (hash32("sample." + name, N_SAMPLES) % np.uint64(step)).astype(np.int64)


# ----------------------------------------------------------------------------
# torch models (the canonical ones from torch_baseline.py, plus a spec builder
# mirroring core/nn's ModelSpec so any Go-built model can be checked)
# ----------------------------------------------------------------------------
def baseline_models(workload):
    sys.path.insert(0, BASELINE)
    import torch_baseline
    return torch_baseline.build_models(workload)


def basic_block_class():
    bb, _, _, _ = baseline_models("resnet18-cifar")
    return type(bb[3])


class BiasOnly(nn.Module):
    """h(z) = z/||z|| + b, the paper's bias-only predictor (Zhang et al.
    add b to the l2-normalized projection Z)."""

    def __init__(self, d):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        return F.normalize(x, dim=1) + self.bias


def build_backbone(spec):
    arch = spec["arch"]
    cin = spec.get("in_channels") or 3
    if arch == "mlp":
        dims = [spec.get("in_dim") or 784] + (spec.get("widths") or [1024, 1024])
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        return nn.Sequential(*layers)
    if arch == "convnet":
        widths = spec.get("widths") or [64, 128, 256, 512]
        strides = spec.get("strides") or [1, 2, 2, 2]
        layers = []
        for w, s in zip(widths, strides):
            layers += [nn.Conv2d(cin, w, 3, s, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            cin = w
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if arch in ("resnet18", "resnet34"):
        Block = basic_block_class()
        blocks = spec.get("blocks") or ([2, 2, 2, 2] if arch == "resnet18" else [3, 4, 6, 3])
        widths = spec.get("widths") or [64, 128, 256, 512]
        strides = spec.get("strides") or [1, 2, 2, 2]
        stem = spec.get("stem_width") or widths[0]
        layers = [nn.Conv2d(cin, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)]
        cin = stem
        for n, w, s in zip(blocks, widths, strides):
            for b in range(n):
                layers.append(Block(cin, w, s if b == 0 else 1))
                cin = w
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    raise ValueError(arch)


def build_head(spec):
    kind = spec.get("kind") or "mlp"
    if kind == "identity":
        return nn.Identity()
    if kind == "bias":
        return BiasOnly(spec["dims"][-1])
    dims = spec["dims"]
    last_bn = spec.get("last_bn") or "none"
    layers = []
    for i in range(len(dims) - 1):
        last = i == len(dims) - 2
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=last and bool(spec.get("last_bias"))))
        if not last:
            layers += [nn.BatchNorm1d(dims[i + 1]), nn.ReLU(inplace=True)]
        elif last_bn != "none":
            layers.append(nn.BatchNorm1d(dims[i + 1], affine=last_bn == "affine"))
    return nn.Sequential(*layers)


def build_model(spec):
    return build_backbone(spec["backbone"]), build_head(spec["projector"]), build_head(spec["predictor"])


# Workload specs in core/nn's JSON form (nn.Workload in Go).
WORKLOAD_SPECS = {
    "mlp-mnist": {"backbone": {"arch": "mlp", "in_dim": 784, "widths": [1024, 1024]},
                  "projector": {"kind": "mlp", "dims": [1024, 512, 512], "last_bn": "plain"},
                  "predictor": {"kind": "mlp", "dims": [512, 128, 512], "last_bias": True}},
    "convnet-cifar": {"backbone": {"arch": "convnet", "in_channels": 3, "widths": [64, 128, 256, 512], "strides": [1, 2, 2, 2]},
                      "projector": {"kind": "mlp", "dims": [512, 512, 512], "last_bn": "plain"},
                      "predictor": {"kind": "mlp", "dims": [512, 128, 512], "last_bias": True}},
    "resnet18-cifar": {"backbone": {"arch": "resnet18", "in_channels": 3},
                       "projector": {"kind": "mlp", "dims": [512, 2048, 2048, 2048], "last_bn": "plain"},
                       "predictor": {"kind": "mlp", "dims": [2048, 512, 2048], "last_bias": True}},
}


def check_spec_matches_baseline():
    """The spec builder must give the same state_dict as build_models."""
    for w, spec in WORKLOAD_SPECS.items():
        ref = baseline_models(w)[:3]
        mine = build_model(spec)
        for a, b in zip(ref, mine):
            ka = [(k, tuple(v.shape)) for k, v in a.state_dict().items()]
            kb = [(k, tuple(v.shape)) for k, v in b.state_dict().items()]
            assert ka == kb, (w, ka[:5], kb[:5])


# ----------------------------------------------------------------------------
# layer cases
# ----------------------------------------------------------------------------
def layer_cases():
    Block = basic_block_class()

    def bn_rand(m):
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.affine:
                    mod.weight.copy_(1 + 0.25 * torch.randn_like(mod.weight))
                    mod.bias.copy_(0.25 * torch.randn_like(mod.bias))
        return m

    def bn_stats(m):
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    mod.running_mean.copy_(0.5 * torch.randn_like(mod.running_mean))
                    mod.running_var.copy_(0.5 + torch.rand_like(mod.running_var))
                    mod.num_batches_tracked.fill_(3)
        return m

    mlp_proj = {"kind": "mlp", "dims": [6, 8, 8, 5], "last_bn": "plain"}
    mlp_pred = {"kind": "mlp", "dims": [5, 3, 5], "last_bias": True}
    mlp_aff = {"kind": "mlp", "dims": [6, 8, 5], "last_bn": "affine"}
    # name: (config, module factory, input shape, train)
    return {
        "linear_bias": ({"layer": "linear", "in": 6, "out": 5, "bias": True}, lambda: nn.Linear(6, 5), (4, 6), True),
        "linear_nobias": ({"layer": "linear", "in": 6, "out": 5, "bias": False}, lambda: nn.Linear(6, 5, bias=False), (4, 6), True),
        "conv_s1": ({"layer": "conv", "in": 3, "out": 4, "k": 3, "stride": 1, "pad": 1, "bias": False},
                    lambda: nn.Conv2d(3, 4, 3, 1, 1, bias=False), (2, 3, 6, 6), True),
        "conv_s2": ({"layer": "conv", "in": 3, "out": 4, "k": 3, "stride": 2, "pad": 1, "bias": False},
                    lambda: nn.Conv2d(3, 4, 3, 2, 1, bias=False), (2, 3, 7, 7), True),
        "conv_s2_bias": ({"layer": "conv", "in": 3, "out": 4, "k": 3, "stride": 2, "pad": 1, "bias": True},
                         lambda: nn.Conv2d(3, 4, 3, 2, 1, bias=True), (2, 3, 6, 6), True),
        "conv1x1_s2": ({"layer": "conv", "in": 3, "out": 4, "k": 1, "stride": 2, "pad": 0, "bias": False},
                       lambda: nn.Conv2d(3, 4, 1, 2, 0, bias=False), (2, 3, 6, 6), True),
        "bn1d_train": ({"layer": "bn1d", "c": 5, "affine": True}, lambda: bn_rand(nn.BatchNorm1d(5)), (6, 5), True),
        "bn1d_noaffine_train": ({"layer": "bn1d", "c": 5, "affine": False}, lambda: nn.BatchNorm1d(5, affine=False), (6, 5), True),
        "bn1d_eval": ({"layer": "bn1d", "c": 5, "affine": True}, lambda: bn_stats(bn_rand(nn.BatchNorm1d(5))), (6, 5), False),
        "bn2d_train": ({"layer": "bn2d", "c": 3, "affine": True}, lambda: bn_rand(nn.BatchNorm2d(3)), (2, 3, 4, 4), True),
        "bn2d_eval": ({"layer": "bn2d", "c": 3, "affine": True}, lambda: bn_stats(bn_rand(nn.BatchNorm2d(3))), (2, 3, 4, 4), False),
        "relu": ({"layer": "relu"}, lambda: nn.ReLU(), (3, 7), True),
        "maxpool_k2s2": ({"layer": "maxpool", "k": 2, "stride": 2, "pad": 0}, lambda: nn.MaxPool2d(2, 2), (2, 3, 6, 6), True),
        "maxpool_k3s2p1": ({"layer": "maxpool", "k": 3, "stride": 2, "pad": 1}, lambda: nn.MaxPool2d(3, 2, 1), (2, 3, 7, 7), True),
        "avgpool_k2s2": ({"layer": "avgpool", "k": 2, "stride": 2, "pad": 0}, lambda: nn.AvgPool2d(2, 2), (2, 3, 6, 6), True),
        "gap": ({"layer": "gap"}, lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), (2, 3, 4, 5), True),
        "flatten": ({"layer": "flatten"}, lambda: nn.Flatten(), (2, 3, 2, 2), True),
        "block_s2": ({"layer": "block", "in": 3, "out": 4, "stride": 2}, lambda: bn_rand(Block(3, 4, 2)), (2, 3, 6, 6), True),
        "block_id": ({"layer": "block", "in": 4, "out": 4, "stride": 1}, lambda: bn_rand(Block(4, 4, 1)), (2, 4, 5, 5), True),
        "block_s2_eval": ({"layer": "block", "in": 3, "out": 4, "stride": 2}, lambda: bn_stats(bn_rand(Block(3, 4, 2))), (2, 3, 6, 6), False),
        "head_projector": ({"layer": "head", "spec": mlp_proj}, lambda: bn_rand(build_head(mlp_proj)), (6, 6), True),
        "head_predictor": ({"layer": "head", "spec": mlp_pred}, lambda: bn_rand(build_head(mlp_pred)), (6, 5), True),
        "head_affine": ({"layer": "head", "spec": mlp_aff}, lambda: bn_rand(build_head(mlp_aff)), (6, 6), True),
        "head_bias": ({"layer": "head", "spec": {"kind": "bias", "dims": [5]}},
                      lambda: _rand_bias(build_head({"kind": "bias", "dims": [5]})), (4, 5), True),
    }


def _rand_bias(m):
    with torch.no_grad():
        m.bias.copy_(0.5 * torch.randn_like(m.bias))
    return m


def gen_layers():
    torch.manual_seed(1234)
    out, cfg = {}, {}
    for name, (config, make, shape, train) in layer_cases().items():
        m = make()
        m.train(train)
        cfg[name] = dict(config, train=train)
        for k, v in m.state_dict().items():
            out[f"{name}/p/{k}"] = v.clone()
        x = torch.randn(*shape, requires_grad=True)
        y = m(x)
        g = torch.randn_like(y)
        (y * g).sum().backward()
        out[f"{name}/x"] = x
        out[f"{name}/out"] = y
        out[f"{name}/gout"] = g
        out[f"{name}/gx"] = x.grad
        for k, p in m.named_parameters():
            out[f"{name}/g/{k}"] = p.grad
        for k, b in m.named_buffers():
            out[f"{name}/after/{k}"] = b.clone()
    path = os.path.join(OUT, "layers.safetensors")
    st.write(path, out, metadata={"cases": json.dumps(cfg, sort_keys=True), "torch": torch.__version__,
                                  "generator": "tools/golden/gen_nn.py"})
    return path


# ----------------------------------------------------------------------------
# model cases
# ----------------------------------------------------------------------------
def store_sampled(out, key, t):
    a = t.detach().numpy().reshape(-1)
    idx = sample_indices(key, a.size)
    out[key + "/norm"] = np.array([np.linalg.norm(a.astype(np.float64))], dtype=np.float32)
    out[key + "/val"] = a[idx]


def gen_model(tag, workload, batch=8):
    parts = baseline_models(workload)
    in_shape = parts[3]
    names = ["backbone", "projector", "predictor"]
    mods = dict(zip(names, parts[:3]))
    for n, m in mods.items():
        hash_init(m, n + ".")
        m.train()
    out = {}
    # (a) one view, loss = sum(p * G): gradients of everything.
    x = torch.from_numpy(hash_uniform("input.x", (batch,) + tuple(in_shape), 0.0, math.sqrt(3.0))).requires_grad_(True)
    h = mods["backbone"](x)
    z = mods["projector"](h)
    p = mods["predictor"](z)
    for m in mods.values():
        for q in m.parameters():
            q.retain_grad() if not q.is_leaf else None
    for t in (h, z):
        t.retain_grad()
    g = torch.from_numpy(hash_uniform("upstream", tuple(p.shape), 0.0, 1.0))
    (p * g).sum().backward()
    store_sampled(out, "feat", h)
    out["z"] = z
    out["p"] = p
    store_sampled(out, "input.x", x)
    store_sampled(out, "grad/input.x", x.grad)
    store_sampled(out, "grad/z", z.grad)
    for n, m in mods.items():
        for k, q in m.named_parameters():
            out[f"param/{n}.{k}"] = q.detach().reshape(-1)[:8].clone()
            store_sampled(out, f"grad/{n}.{k}", q.grad)
        for k, b in m.named_buffers():
            if b.dtype == torch.int64:
                out[f"after/{n}.{k}"] = b.clone()
            else:
                store_sampled(out, f"after/{n}.{k}", b)
    # (b) SimSiam loss on two views, fresh models (running stats start at
    # defaults again): L = -0.5 (mean cos(p1, sg z2) + mean cos(p2, sg z1)).
    parts = baseline_models(workload)
    mods = dict(zip(names, parts[:3]))
    for n, m in mods.items():
        hash_init(m, n + ".")
        m.train()
    x1 = torch.from_numpy(hash_uniform("input.x1", (batch,) + tuple(in_shape), 0.0, math.sqrt(3.0)))
    x2 = torch.from_numpy(hash_uniform("input.x2", (batch,) + tuple(in_shape), 0.0, math.sqrt(3.0)))
    f = lambda v: mods["projector"](mods["backbone"](v))
    z1, z2 = f(x1), f(x2)
    p1, p2 = mods["predictor"](z1), mods["predictor"](z2)
    loss = -0.5 * (F.cosine_similarity(p1, z2.detach(), dim=-1).mean() + F.cosine_similarity(p2, z1.detach(), dim=-1).mean())
    loss.backward()
    out["simsiam/loss"] = loss.detach().reshape(1)
    for n, m in mods.items():
        for k, q in m.named_parameters():
            store_sampled(out, f"simsiam/grad/{n}.{k}", q.grad)
    path = os.path.join(OUT, f"model_{tag}.safetensors")
    st.write(path, out, metadata={"workload": workload, "batch": str(batch), "torch": torch.__version__,
                                  "spec": json.dumps(WORKLOAD_SPECS[workload], sort_keys=True),
                                  "generator": "tools/golden/gen_nn.py"})
    return path


def gen_state_keys():
    """state_dict keys and shapes of the workload models (and ResNet-34,
    MNIST variants, a bias-only predictor) for the Go naming test."""
    specs = dict(WORKLOAD_SPECS)
    specs["resnet34-mnist"] = {"backbone": {"arch": "resnet34", "in_channels": 1},
                               "projector": {"kind": "mlp", "dims": [512, 256, 64], "last_bn": "affine"},
                               "predictor": {"kind": "bias", "dims": [64]}}
    specs["convnet-mnist"] = {"backbone": {"arch": "convnet", "in_channels": 1, "widths": [32, 64], "strides": [1, 2]},
                              "projector": {"kind": "mlp", "dims": [64, 64], "last_bn": "none"},
                              "predictor": {"kind": "identity"}}
    out = {}
    for name, spec in specs.items():
        keys = []
        for part, m in zip(["backbone", "projector", "predictor"], build_model(spec)):
            keys += [[f"{part}.{k}", list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in m.state_dict().items()]
        out[name] = {"spec": spec, "keys": keys}
    path = os.path.join(OUT, "state_keys.json")
    with open(path, "w") as f:
        json.dump(out, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")
    return path


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    check_spec_matches_baseline()
    # Self-check of the hash formula against fixed values (mirrored in Go).
    v = hash_uniform("backbone.0.weight", (4,), 0.0, 1.0)
    print("hash check backbone.0.weight[:4] =", [float(a) for a in v])
    for p in (gen_state_keys(), gen_layers(), gen_model("w1", "mlp-mnist"), gen_model("w2", "convnet-cifar")):
        print(p, os.path.getsize(p), "bytes")


if __name__ == "__main__":
    main()
