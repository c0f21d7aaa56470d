#!/usr/bin/python3
"""Golden values for the bundled loss plugins, from PyTorch 1.13.

For each variant: the inputs, the loss and its gradients with respect to
every input, written with st.py to plugins/<name>/testdata/<variant>.safetensors.
The PyTorch code below is written from the papers' formulas, independently of
the Go implementation under test.

    /usr/bin/python3 tools/golden/gen_losses.py
"""
import os

import torch
import torch.nn.functional as F

import st

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
N, D = 8, 16


def inputs(seed, names):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(N, D, generator=g, dtype=torch.float64).float().requires_grad_() for n in names}


def save(plugin, variant, ins, loss, meta):
    loss.backward()
    out = {"loss": loss.detach().reshape(1)}
    for n, v in ins.items():
        out[n] = v.detach()
        out["grad." + n] = v.grad if v.grad is not None else torch.zeros_like(v)
    d = os.path.join(ROOT, "plugins", plugin, "testdata")
    os.makedirs(d, exist_ok=True)
    st.write(os.path.join(d, variant + ".safetensors"), out, meta)


def simsiam(z1, z2, p1, p2, stop_gradient=True, target="z"):
    def half(pa, zb, pb):
        if target in ("z", "p"):
            t = zb if target == "z" else pb
            if stop_gradient:
                t = t.detach()
            return F.cosine_similarity(pa, t, dim=-1).mean()
        zn = F.normalize(zb.detach(), dim=1)
        pn = F.normalize(pb.detach(), dim=1)
        ge = zn - pn
        oe = ge.mean(0, keepdim=True)
        t = pn + oe if target == "p+center" else pn + (ge - oe)
        return (F.normalize(pa, dim=1) * t).sum(1).mean()
    return -0.5 * (half(p1, z2, p2) + half(p2, z1, p1))


def ntxent(z1, z2, t):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = z @ z.T / t
    s = s.masked_fill(torch.eye(2 * N, dtype=torch.bool), float("-inf"))
    labels = torch.cat([torch.arange(N, 2 * N), torch.arange(0, N)])
    return F.cross_entropy(s, labels)


def triplet(z1, z2, negative):
    def half(za, zb):
        zbn = F.normalize(zb.detach(), dim=1)
        rolled = torch.roll(zbn, shifts=-1, dims=0)  # negative of m: row m+1
        if negative == "full":
            t = zbn - rolled
        elif negative == "center":
            t = zbn - zbn.mean(0, keepdim=True)
        else:
            t = zbn - (rolled - zbn.mean(0, keepdim=True))
        return (F.normalize(za, dim=1) * t).sum(1).mean()
    return -0.5 * (half(z1, z2) + half(z2, z1))


def byol(p1, p2, t1, t2):
    return (2 - 2 * F.cosine_similarity(p1, t2.detach(), dim=-1)).mean() + \
        (2 - 2 * F.cosine_similarity(p2, t1.detach(), dim=-1)).mean()


def main():
    torch.set_default_dtype(torch.float32)
    variants = [
        ("simsiam", dict()),
        ("no_stop_gradient", dict(stop_gradient=False)),
        ("symmetric_predictor", dict(target="p")),
        ("extra_center", dict(target="p+center")),
        ("extra_residual", dict(target="p+residual")),
    ]
    for i, (name, kw) in enumerate(variants):
        ins = inputs(100 + i, ["z1", "z2", "p1", "p2"])
        loss = simsiam(ins["z1"], ins["z2"], ins["p1"], ins["p2"], **kw)
        meta = {"stop_gradient": str(kw.get("stop_gradient", True)).lower(), "target": kw.get("target", "z")}
        save("simsiam", name, ins, loss, meta)
    # Naive Siamese: no predictor, p = z.
    ins = inputs(120, ["z1", "z2"])
    save("simsiam", "naive_siamese", ins, simsiam(ins["z1"], ins["z2"], ins["z1"], ins["z2"]),
         {"stop_gradient": "true", "target": "z", "predictor": "none"})

    for i, t in enumerate([0.1, 0.5, 1.0]):
        ins = inputs(200 + i, ["z1", "z2"])
        save("simclr", "ntxent_t%g" % t, ins, ntxent(ins["z1"], ins["z2"], t), {"temperature": str(t)})
    for i, neg in enumerate(["full", "center", "residual"]):
        ins = inputs(210 + i, ["z1", "z2"])
        save("simclr", "triplet_" + neg, ins, triplet(ins["z1"], ins["z2"], neg), {"negative": neg})
    ins = inputs(300, ["p1", "p2", "t1", "t2"])
    save("byol", "byol", ins, byol(ins["p1"], ins["p2"], ins["t1"], ins["t2"]), {})


if __name__ == "__main__":
    main()
