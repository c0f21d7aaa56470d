#!/usr/bin/python3
"""Golden fixtures for core/autodiff: values and input gradients of the ops
the SSL losses are made of, computed by PyTorch 1.13 autograd.

Run from the repository root with Debian's python (torch 1.13):

    /usr/bin/python3 tools/golden/gen_autodiff.py

It writes core/autodiff/testdata/autodiff_golden.safetensors. Every case is a
group of tensors named "<case>.<tensor>": the inputs, the forward output and
"<case>.grad_<input>" = d(sum(out * w))/d input for the fixed random weights
"<case>.w" (scalar outputs use w = 1 and have no w). The metadata entry
"<case>" describes the computation so the Go test replays the same thing.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

OUT = os.path.join("core", "autodiff", "testdata", "autodiff_golden.safetensors")

tensors = {}
meta = {"generator": "tools/golden/gen_autodiff.py", "torch": torch.__version__}


def leaf(t):
    return t.clone().requires_grad_(True)


def put(case, desc, **kw):
    meta[case] = desc
    for k, v in kw.items():
        tensors[f"{case}.{k}"] = v.detach().clone() if hasattr(v, "detach") else v


def grad_of(t):
    return t.grad if t.grad is not None else torch.zeros_like(t)


def main():
    torch.manual_seed(0)

    # Cosine similarity, rows of mixed scale (F.cosine_similarity, dim=-1,
    # eps=1e-8); one row tiny, one row of a huge norm.
    a = torch.randn(6, 8)
    b = torch.randn(6, 8)
    a[1] *= 1e-4
    b[2] *= 1e3
    w = torch.randn(6)
    la, lb = leaf(a), leaf(b)
    out = F.cosine_similarity(la, lb, dim=-1)
    (out * w).sum().backward()
    put("cosine", "out = F.cosine_similarity(a, b, dim=-1); L = sum(out*w)",
        a=a, b=b, w=w, out=out, grad_a=la.grad, grad_b=lb.grad)

    # Cosine similarity with a large eps so that the clamp is active for
    # some rows: pins PyTorch 1.13's gradient through the clamped norm.
    a = torch.randn(4, 5)
    b = torch.randn(4, 5)
    a[0] *= 0.05
    b[1] *= 0.05
    a[2] *= 0.05
    b[2] *= 0.05
    w = torch.randn(4)
    la, lb = leaf(a), leaf(b)
    out = F.cosine_similarity(la, lb, dim=-1, eps=0.5)
    (out * w).sum().backward()
    put("cosine_eps", "out = F.cosine_similarity(a, b, dim=-1, eps=0.5); L = sum(out*w)",
        a=a, b=b, w=w, out=out, grad_a=la.grad, grad_b=lb.grad)

    # L2 normalize (F.normalize, dim=1, eps=1e-12), one tiny row.
    x = torch.randn(5, 7)
    x[3] *= 1e-5
    w = torch.randn(5, 7)
    lx = leaf(x)
    out = F.normalize(lx, dim=1)
    (out * w).sum().backward()
    put("normalize", "out = F.normalize(x, dim=1); L = sum(out*w)",
        x=x, w=w, out=out, grad_x=lx.grad)

    # Log-softmax with a -inf diagonal; the weights are 0 on the diagonal
    # (out is -inf there and -inf*0 would be NaN).
    x = torch.randn(5, 5) * 2
    w = torch.randn(5, 5)
    mask = torch.eye(5, dtype=torch.bool)
    w[mask] = 0
    lx = leaf(x)
    out = F.log_softmax(lx.masked_fill(mask, float("-inf")), dim=1)
    out.masked_fill(mask, 0).mul(w).sum().backward()
    put("logsoftmax_masked", "out = log_softmax(x with diag=-inf, dim=1); L = sum(where(diag, 0, out)*w)",
        x=x, w=w, out=out, grad_x=lx.grad)

    # Cross-entropy, mean reduction.
    x = torch.randn(6, 7) * 3
    target = torch.tensor([0, 6, 3, 3, 1, 5], dtype=torch.int64)
    lx = leaf(x)
    out = F.cross_entropy(lx, target)
    out.backward()
    put("cross_entropy", "out = F.cross_entropy(x, target)",
        x=x, target=target, out=out.reshape(1), grad_x=lx.grad)

    # SimCLR NT-Xent: z = normalize(cat(z1, z2)), S = z z^T / t, diagonal
    # -inf, CE with targets i <-> i+B.
    B, D, t = 4, 6, 0.5
    z1 = torch.randn(B, D)
    z2 = torch.randn(B, D)
    l1, l2 = leaf(z1), leaf(z2)
    z = F.normalize(torch.cat([l1, l2]), dim=1)
    s = z @ z.t() / t
    s = s.masked_fill(torch.eye(2 * B, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)])
    out = F.cross_entropy(s, target)
    out.backward()
    put("ntxent", f"z = normalize(cat(z1, z2)); S = z z^T / {t}; S.diag = -inf; out = cross_entropy(S, target)",
        z1=z1, z2=z2, target=target, out=out.reshape(1), logits=s, grad_z1=l1.grad, grad_z2=l2.grad)
    meta["ntxent.temperature"] = str(t)

    # MatMul, plain and with a transposed right operand.
    a = torch.randn(3, 4)
    b = torch.randn(4, 5)
    w = torch.randn(3, 5)
    la, lb = leaf(a), leaf(b)
    out = la @ lb
    (out * w).sum().backward()
    put("matmul", "out = a @ b; L = sum(out*w)", a=a, b=b, w=w, out=out, grad_a=la.grad, grad_b=lb.grad)
    c = torch.randn(5, 4)
    la, lc = leaf(a), leaf(c)
    out = la @ lc.t()
    (out * w).sum().backward()
    put("matmul_nt", "out = a @ c.T; L = sum(out*w)", a=a, c=c, w=w, out=out, grad_a=la.grad, grad_c=lc.grad)

    # SimSiam loss with stop-gradient on the targets.
    p1, p2, z1, z2 = (torch.randn(6, 8) for _ in range(4))
    lp1, lp2, lz1, lz2 = leaf(p1), leaf(p2), leaf(z1), leaf(z2)
    out = -0.5 * (F.cosine_similarity(lp1, lz2.detach(), dim=-1).mean()
                  + F.cosine_similarity(lp2, lz1.detach(), dim=-1).mean())
    out.backward()
    put("simsiam", "out = -0.5*(cos(p1, sg(z2)).mean() + cos(p2, sg(z1)).mean())",
        p1=p1, p2=p2, z1=z1, z2=z2, out=out.reshape(1),
        grad_p1=grad_of(lp1), grad_p2=grad_of(lp2), grad_z1=grad_of(lz1), grad_z2=grad_of(lz2))

    # BatchNorm1d / 2d in training mode: output, gradients and the running
    # statistics after one step (momentum 0.1, eps 1e-5).
    for name, shape in (("bn1d", (8, 5)), ("bn2d", (4, 3, 2, 3))):
        c = shape[1]
        x = torch.randn(*shape) * 2 + 0.5
        gamma = torch.randn(c)
        beta = torch.randn(c)
        w = torch.randn(*shape)
        bn = torch.nn.BatchNorm1d(c) if len(shape) == 2 else torch.nn.BatchNorm2d(c)
        with torch.no_grad():
            bn.weight.copy_(gamma)
            bn.bias.copy_(beta)
        bn.train()
        lx = leaf(x)
        out = bn(lx)
        (out * w).sum().backward()
        put(name, "train-mode BatchNorm, one step from running mean 0 / var 1; L = sum(out*w)",
            x=x, gamma=gamma, beta=beta, w=w, out=out, grad_x=lx.grad,
            grad_gamma=bn.weight.grad, grad_beta=bn.bias.grad,
            running_mean=bn.running_mean, running_var=bn.running_var)
        # Evaluation mode with those running statistics.
        bn.eval()
        bn.weight.grad = None
        bn.bias.grad = None
        lx = leaf(x)
        out = bn(lx)
        (out * w).sum().backward()
        put(name + "_eval", "eval-mode BatchNorm with the running stats above; L = sum(out*w)",
            out=out, grad_x=lx.grad, grad_gamma=bn.weight.grad, grad_beta=bn.bias.grad)

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    st.write(OUT, tensors, metadata=meta)
    print(f"wrote {OUT}: {len(tensors)} tensors, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
