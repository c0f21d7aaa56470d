#!/usr/bin/python3
"""Golden fixtures for core/optim: PyTorch 1.13 optimizers, solo-learn's LARS,
warmup-cosine schedule and BYOL momentum (EMA) updater.

Run from the repository root with Debian's python (torch 1.13):

    /usr/bin/python3 tools/golden/gen_optim.py

It writes core/optim/testdata/*.safetensors. Every optimizer file holds

    init.<p>            the parameters before the first step
    grad<k>.<p>         the gradient fed at step k (k = 1, 2, 3; fixed, different each step)
    step<k>.<p>         the parameters after step k
    step<k>.<p>.<state> the optimizer state after step k (momentum_buffer,
                        exp_avg, exp_avg_sq), named as the Go State() names them

and a metadata entry "case" with a JSON description (algorithm, groups and
their hyperparameters, the scheduled lr of each step) that the Go test
replays, so the parameter table lives here only.

SGD and AdamW are torch.optim.SGD / torch.optim.AdamW themselves (the default
single-tensor code paths). torch has no LARS: the LARS reference is LARSRef
below, a direct transcription of solo-learn's solo/utils/lars.py (itself from
PyTorch Lightning Bolts) written against the same torch ops. The schedule
reference is a transcription of solo-learn's LinearWarmupCosineAnnealingLR in
its chainable form (the form Lightning calls every step) driving a real torch
optimizer, with solo-learn's static_lr override for a fixed-lr group; the EMA
reference transcribes solo-learn's MomentumUpdater (update + update_tau) and
its order of calls in BaseMomentumMethod.on_train_batch_end.
"""
import json
import math
import os
import sys

import torch
from torch.optim.lr_scheduler import _LRScheduler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

OUT = os.path.join("core", "optim", "testdata")

# name -> (shape, kind). kind follows the Go ParamKind names.
PARAMS = [
    ("w1", (6, 5), "weight"),
    ("w2", (4, 6), "weight"),  # gets tiny gradients so LARS clipping splits both ways
    ("bias", (6,), "bias"),
    ("bn.gamma", (6,), "norm"),
    ("bn.beta", (6,), "norm"),
]


def make_params():
    torch.manual_seed(0)
    out = {}
    for name, shape, kind in PARAMS:
        if name == "bn.gamma":
            t = 1.0 + 0.1 * torch.randn(shape)
        elif name == "bn.beta":
            t = 0.05 * torch.randn(shape)
        else:
            t = torch.randn(shape) * (0.5 if kind == "weight" else 0.1)
        out[name] = t
    return out


def make_grads(steps=3):
    torch.manual_seed(1)
    grads = []
    for k in range(steps):
        g = {}
        for name, shape, _ in PARAMS:
            t = torch.randn(shape) * (0.3 + 0.2 * k)
            if name == "w2":
                t = t * 1e-3
            g[name] = t
        grads.append(g)
    return grads


class LARSRef(torch.optim.Optimizer):
    """solo-learn's LARS (solo/utils/lars.py), transcribed.

    Per parameter with a gradient: if it is adapted (ndim != 1 or exclusion
    off) and both norms are non-zero, the gradient becomes
    lars_lr * (g + wd * p) with lars_lr = eta * ||p|| / (||g|| + wd * ||p|| + eps),
    clipped to min(lars_lr / lr, 1) when clip_lars_lr; otherwise the raw
    gradient is used (no weight decay at all). Then torch SGD momentum
    (buffer = clone on the first step, else mu * buf + (1 - dampening) * d;
    nesterov d + mu * buf) and p -= lr * d.
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, eta=1e-3, eps=1e-8, clip_lars_lr=False,
                 exclude_bias_n_norm_lars=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, eta=eta, eps=eps,
                        clip_lars_lr=clip_lars_lr,
                        exclude_bias_n_norm_lars=exclude_bias_n_norm_lars)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            wd = group["weight_decay"]
            mu = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                p_norm = torch.norm(p.data)
                g_norm = torch.norm(p.grad.data)
                if p.ndim != 1 or not group["exclude_bias_n_norm_lars"]:
                    if p_norm != 0 and g_norm != 0:
                        lars_lr = p_norm / (g_norm + p_norm * wd + group["eps"])
                        lars_lr *= group["eta"]
                        if group["clip_lars_lr"]:
                            lars_lr = min(lars_lr / group["lr"], 1)
                        d_p = d_p.add(p, alpha=wd)
                        d_p *= lars_lr
                if mu != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        buf = state["momentum_buffer"] = torch.clone(d_p).detach()
                    else:
                        buf = state["momentum_buffer"]
                        buf.mul_(mu).add_(d_p, alpha=1 - group["dampening"])
                    if group["nesterov"]:
                        d_p = d_p.add(buf, alpha=mu)
                    else:
                        d_p = buf
                p.add_(d_p, alpha=-group["lr"])


def run_case(fname, algo, groups, lrs, note):
    """groups: list of dicts {names, static_lr (float|None), lr_scale, **hyper}."""
    init = make_params()
    grads = make_grads(len(lrs))
    tp = {n: torch.nn.Parameter(init[n].clone()) for n, _, _ in PARAMS}
    tgroups = []
    for g in groups:
        tg = {"params": [tp[n] for n in g["names"]]}
        tg.update(g["torch"])
        tgroups.append(tg)
    if algo == "sgd":
        opt = torch.optim.SGD(tgroups, lr=lrs[0])
    elif algo == "lars":
        opt = LARSRef(tgroups, lr=lrs[0])
    elif algo == "adamw":
        opt = torch.optim.AdamW(tgroups, lr=lrs[0])
    else:
        raise ValueError(algo)
    out = {f"init.{n}": init[n] for n in init}
    for k, lr in enumerate(lrs, start=1):
        for g, tg in zip(groups, opt.param_groups):
            if g.get("static_lr") is not None:
                tg["lr"] = g["static_lr"]
            else:
                tg["lr"] = lr * g.get("lr_scale", 1.0)
        for n in tp:
            tp[n].grad = grads[k - 1][n].clone()
            out[f"grad{k}.{n}"] = grads[k - 1][n]
        opt.step()
        for n, p in tp.items():
            out[f"step{k}.{n}"] = p.detach().clone()
            for sname, sval in opt.state[p].items():
                if sname == "step":
                    continue
                out[f"step{k}.{n}.{sname}"] = sval.detach().clone()
    case = {"algorithm": algo, "lrs": lrs, "note": note,
            "kinds": {n: k for n, _, k in PARAMS},
            "groups": [{k: v for k, v in g.items() if k != "torch"} for g in groups]}
    st.write(os.path.join(OUT, fname), out, metadata={"case": json.dumps(case)})


ALL = [n for n, _, _ in PARAMS]
LRS = [0.1, 0.08, 0.05]


def optimizer_cases():
    run_case("sgd.safetensors", "sgd",
             [{"names": ALL, "momentum": 0.9, "weight_decay": 5e-4,
               "torch": dict(momentum=0.9, weight_decay=5e-4)}],
             LRS, "torch.optim.SGD momentum 0.9 wd 5e-4")
    run_case("sgd_nesterov.safetensors", "sgd",
             [{"names": ALL, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True,
               "torch": dict(momentum=0.9, weight_decay=5e-4, nesterov=True)}],
             LRS, "torch.optim.SGD nesterov momentum 0.9 wd 5e-4")
    lars = dict(momentum=0.9, weight_decay=5e-4, eta=0.02, eps=1e-8)
    for fname, clip, excl in [("lars.safetensors", False, True),
                              ("lars_clip.safetensors", True, True),
                              ("lars_noexclude.safetensors", False, False)]:
        run_case(fname, "lars",
                 [{"names": ALL, **lars, "clip_lr": clip, "exclude_bias_norm": excl,
                   "torch": dict(lars, clip_lars_lr=clip, exclude_bias_n_norm_lars=excl)}],
                 [0.3, 0.25, 0.2],
                 f"solo-learn LARS transcription eta 0.02 clip {clip} exclude {excl}")
    run_case("adamw.safetensors", "adamw",
             [{"names": ALL, "weight_decay": 0.05, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
               "torch": dict(weight_decay=0.05, betas=(0.9, 0.999), eps=1e-8)}],
             [1e-3, 2e-3, 5e-4], "torch.optim.AdamW betas .9/.999 wd 0.05")
    # solo-learn's SimSiam layout: exclude_bias_n_norm_wd splits the backbone
    # group into decay / no-decay groups, the predictor group has static_lr.
    run_case("groups.safetensors", "sgd",
             [{"names": ["w1"], "momentum": 0.9, "weight_decay": 5e-4,
               "torch": dict(momentum=0.9, weight_decay=5e-4)},
              {"names": ["bias", "bn.gamma", "bn.beta"], "momentum": 0.9, "weight_decay": 0.0,
               "torch": dict(momentum=0.9, weight_decay=0.0)},
              {"names": ["w2"], "momentum": 0.9, "weight_decay": 5e-4, "static_lr": 0.06,
               "torch": dict(momentum=0.9, weight_decay=5e-4)}],
             LRS, "SGD groups: decay, no-decay, static-lr predictor")


class WarmupCosineRef(_LRScheduler):
    """solo-learn's LinearWarmupCosineAnnealingLR, chainable form, transcribed."""

    def __init__(self, optimizer, warmup_epochs, max_epochs, warmup_start_lr=0.0, eta_min=0.0):
        self.warmup_epochs = warmup_epochs
        self.max_epochs = max_epochs
        self.warmup_start_lr = warmup_start_lr
        self.eta_min = eta_min
        super().__init__(optimizer, -1)

    def get_lr(self):
        W, T, e = self.warmup_epochs, self.max_epochs, self.last_epoch
        groups = self.optimizer.param_groups
        if e == 0:
            return [self.warmup_start_lr] * len(self.base_lrs)
        if e < W:
            return [g["lr"] + (b - self.warmup_start_lr) / (W - 1)
                    for b, g in zip(self.base_lrs, groups)]
        if e == W:
            return list(self.base_lrs)
        if (e - 1 - T) % (2 * (T - W)) == 0:
            return [g["lr"] + (b - self.eta_min) * (1 - math.cos(math.pi / (T - W))) / 2
                    for b, g in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * (e - W) / (T - W)))
                / (1 + math.cos(math.pi * (e - W - 1) / (T - W)))
                * (g["lr"] - self.eta_min) + self.eta_min for g in groups]


def schedule_case():
    base, start, eta_min, W, T = 0.5, 0.01, 0.001, 5, 20
    p1 = torch.nn.Parameter(torch.zeros(1))
    p2 = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p1]}, {"params": [p2]}], lr=base)
    sched = WarmupCosineRef(opt, W, T, warmup_start_lr=start, eta_min=eta_min)
    # solo-learn's static_lr: the predictor group's lr is replaced by the base lr.
    orig = sched.get_lr

    def static(get_lr=orig):
        lrs = get_lr()
        lrs[1] = base
        return lrs
    sched.get_lr = static
    # The constructor already applied last_epoch 0 with the unpatched get_lr;
    # solo-learn patches after construction too, so the first value of the
    # static group is what the scheduler set (warmup start), exactly as there.
    sched_lrs, static_lrs = [], []
    for _ in range(T):
        sched_lrs.append(opt.param_groups[0]["lr"])
        static_lrs.append(opt.param_groups[1]["lr"])
        opt.step()
        sched.step()
    closed = []
    for e in range(T):
        if e < W:
            closed.append(start + e * (base - start) / (W - 1))
        else:
            closed.append(eta_min + 0.5 * (base - eta_min) * (1 + math.cos(math.pi * (e - W) / (T - W))))
    case = {"base_lr": base, "warmup_start_lr": start, "min_lr": eta_min,
            "warmup": W, "total": T}
    st.write(os.path.join(OUT, "schedule.safetensors"),
             {"lr": torch.tensor(sched_lrs, dtype=torch.float64),
              "static_lr": torch.tensor(static_lrs, dtype=torch.float64),
              "closed_form": torch.tensor(closed, dtype=torch.float64)},
             metadata={"case": json.dumps(case)})


def ema_case():
    """BYOL target update as solo-learn's BaseMomentumMethod does it: after
    global step j (j = 1, 2, ...) update with the current tau, then set
    tau = 1 - (1 - base) * (cos(pi * j / K) + 1) / 2."""
    base, final, K, steps = 0.99, 1.0, 6, 4
    torch.manual_seed(2)
    online = {n: torch.randn(s) for n, s, _ in PARAMS}
    target = {n: online[n].clone() for n in online}  # initialize_momentum_params
    out = {f"init.{n}": online[n].clone() for n in online}
    cur_tau = base
    taus = []
    for j in range(1, steps + 1):
        for n in online:  # the online net moved during step j
            online[n] = online[n] + 0.1 * torch.randn(online[n].shape)
            out[f"online{j}.{n}"] = online[n].clone()
        taus.append(cur_tau)
        for n in online:
            target[n] = cur_tau * target[n] + (1 - cur_tau) * online[n]
            out[f"target{j}.{n}"] = target[n].clone()
        cur_tau = final - (final - base) * (math.cos(math.pi * j / K) + 1) / 2
    out["tau"] = torch.tensor(taus, dtype=torch.float64)
    case = {"base_tau": base, "final_tau": final, "total": K, "steps": steps}
    st.write(os.path.join(OUT, "ema.safetensors"), out, metadata={"case": json.dumps(case)})


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    optimizer_cases()
    schedule_case()
    ema_case()
    print("wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
