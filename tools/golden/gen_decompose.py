#!/usr/bin/python3
"""Golden values for plugins/decompose, from NumPy and PyTorch 1.13.

Every metric is computed here from its definition in the package doc of
plugins/decompose, independently of the Go code: spectra with a full SVD of
the [N, d] matrix (the Go code uses the eigenvalues of the smaller Gram
matrix), the std with torch.std (unbiased), the covariance with np.cov.
Inputs are float32 tensors; expected metrics are float64 and stored as repr
strings in the metadata ("metric.<key>"), spectra as comma-separated reprs
("array.<key>"), so no precision is lost on the way to Go.

    /usr/bin/python3 tools/golden/gen_decompose.py
"""
import os

import numpy as np
import torch

import st

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "plugins", "decompose", "testdata")


def normalize(x):
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12), n[:, 0]


def eff_rank(s):
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def embeddings(x):
    Z, _ = normalize(x)
    n, d = Z.shape
    o = Z.mean(0)
    r = Z - o
    rn = np.linalg.norm(r, axis=1)
    std = torch.from_numpy(Z).std(dim=0).numpy()  # unbiased, like solo-learn
    C = np.cov(Z, rowvar=False)  # centred, / (N-1)
    off = C - np.diag(np.diag(C))
    s = np.linalg.svd(Z, compute_uv=False)
    sr = np.linalg.svd(r, compute_uv=False)
    mo = float(np.linalg.norm(o))
    m = {
        "m_o": mo,
        "m_r": float(rn.mean()),
        "identity_err": abs(mo ** 2 + float((rn ** 2).mean()) - 1),
        "noise_floor": 1 / np.sqrt(n),
        "m_o_sqrt_n": mo * np.sqrt(n),
        "std": float(std.mean()),
        "std_sqrt_d": float(std.mean()) * np.sqrt(d),
        "offdiag_cov": float((off ** 2).sum() / d),
        "eff_rank": eff_rank(s),
        "eff_rank_residual": eff_rank(sr),
    }
    return m, {"spectrum": s, "residual_spectrum": sr}


def gradient(z, g, normalized=False, tangential=False):
    Z, zn = normalize(z)
    g = np.asarray(g, dtype=np.float64)
    u = -g if normalized else -zn[:, None] * g
    if normalized and tangential:
        u = u - (u * Z).sum(1, keepdims=True) * Z
    o = Z.mean(0)
    e = o / np.linalg.norm(o)
    c = u @ e
    v = u - c[:, None] * e[None, :]
    un = np.linalg.norm(u, axis=1)
    S = (un ** 2).sum()
    return {
        "grad_norm": float(un.mean()),
        "grad_center_coef": float(c.mean()),
        "grad_center_cos": float((c / un).mean()),
        "grad_center_norm": float(np.abs(c).mean()),
        "grad_residual_norm": float(np.linalg.norm(v, axis=1).mean()),
        "grad_center_share": float((c ** 2).sum() / S),
        "grad_decenter_share": float((c[c < 0] ** 2).sum() / S),
        "grad_collapse_share": float((c[c > 0] ** 2).sum() / S),
        "grad_decorr_share": float((v ** 2).sum() / S),
    }


def extra(zb, pb):
    Z, _ = normalize(zb)
    P, _ = normalize(pb)
    G = Z - P
    oe = G.mean(0)
    re = G - oe
    op = P.mean(0)
    return {
        "extra_eta": float(oe @ op / (op @ op)),
        "extra_cos": float(oe @ op / (np.linalg.norm(oe) * np.linalg.norm(op))),
        "extra_oe_norm": float(np.linalg.norm(oe)),
        "extra_re_norm": float(np.linalg.norm(re, axis=1).mean()),
        "extra_op_norm": float(np.linalg.norm(op)),
    }


def save(name, tensors, metrics, arrays=None, meta=None):
    md = {"metric." + k: repr(float(v)) for k, v in metrics.items()}
    for k, v in (arrays or {}).items():
        md["array." + k] = ",".join(repr(float(a)) for a in v)
    md.update(meta or {})
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name + ".safetensors")
    st.write(path, {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}, md)
    assert os.path.getsize(path) < 200_000, path


def f32(x):
    return x.float().numpy().astype(np.float32)


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1234)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    emb = {
        # Random directions, non-unit norms; d <= N (d x d Gram path).
        "emb_random": 3 * randn(64, 32),
        # Random, N < d (N x N Gram path).
        "emb_random_wide": randn(24, 40),
        # Nearly collapsed: every row close to one vector.
        "emb_collapsed": randn(1, 32) + 0.01 * randn(64, 32),
        # Low rank: rows in a 3-d subspace, N < d.
        "emb_lowrank": randn(48, 3) @ randn(3, 64),
    }
    for name, x in emb.items():
        x = f32(x)
        m, a = embeddings(x)
        save(name, {"x": x}, m, a)

    # Gradient: z with a clear centre; g with per-row components of both
    # signs along the centre plus noise.
    n, d = 32, 16
    z = f32(randn(n, d) + 2 * randn(1, d))
    Z, _ = normalize(z)
    e = Z.mean(0) / np.linalg.norm(Z.mean(0))
    alpha = (2 * torch.rand(n, 1, generator=g, dtype=torch.float64) - 1).numpy()
    gr = f32(torch.from_numpy(alpha * e[None, :]) + 0.3 * randn(n, d))
    save("grad", {"z": z, "g": gr}, gradient(z, gr), meta={"mode": "raw"})
    save("grad_normalized", {"z": z, "g": gr}, gradient(z, gr, normalized=True), meta={"mode": "normalized"})
    save("grad_tangential", {"z": z, "g": gr}, gradient(z, gr, normalized=True, tangential=True),
         meta={"mode": "normalized+tangential"})

    # Extra gradient: p_b a noisy, shifted version of z_b.
    zb = f32(randn(n, d) + randn(1, d))
    pb = f32(torch.from_numpy(zb.astype(np.float64)) + 0.5 * randn(n, d) + 0.5 * randn(1, d))
    save("extra", {"zb": zb, "pb": pb}, extra(zb, pb))


if __name__ == "__main__":
    main()
