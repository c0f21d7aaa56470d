#!/usr/bin/python3
"""Golden values for the example VICReg loss plugin (plugins/vicreg), from
PyTorch 1.13.

The loss is solo-learn's vicreg_loss_func (solo/losses/vicreg.py), transcribed
below with lightly's gamma (VICRegLoss's variance_loss): invariance
F.mse_loss(z1, z2), variance mean(relu(gamma - sqrt(var(z, dim=0) + eps)))
per branch (unbiased var), covariance sum of the squared off-diagonal
entries of the (N-1)-normalized covariance divided by D per branch. Each
case writes the inputs, the options (metadata), the loss, its three terms
and the gradients on z1 and z2 to plugins/vicreg/testdata/<case>.safetensors.

    /usr/bin/python3 tools/golden/gen_vicreg.py
"""
import os

import torch
import torch.nn.functional as F

import st

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "plugins", "vicreg", "testdata")


def invariance_loss(z1, z2):
    return F.mse_loss(z1, z2)


def variance_loss(z1, z2, gamma, eps):
    std_z1 = torch.sqrt(z1.var(dim=0) + eps)
    std_z2 = torch.sqrt(z2.var(dim=0) + eps)
    return torch.mean(F.relu(gamma - std_z1)) + torch.mean(F.relu(gamma - std_z2))


def covariance_loss(z1, z2):
    n, d = z1.size()
    z1 = z1 - z1.mean(dim=0)
    z2 = z2 - z2.mean(dim=0)
    cov_z1 = (z1.T @ z1) / (n - 1)
    cov_z2 = (z2.T @ z2) / (n - 1)
    off = ~torch.eye(d, dtype=torch.bool)
    return cov_z1[off].pow(2).sum() / d + cov_z2[off].pow(2).sum() / d


def case(name, seed, n, d, scale, sim=25.0, var=25.0, cov=1.0, gamma=1.0, eps=1e-4):
    g = torch.Generator().manual_seed(seed)
    z1 = (scale * torch.randn(n, d, generator=g, dtype=torch.float64)).float().requires_grad_()
    z2 = (scale * torch.randn(n, d, generator=g, dtype=torch.float64)).float().requires_grad_()
    inv = invariance_loss(z1, z2)
    vr = variance_loss(z1, z2, gamma, eps)
    cv = covariance_loss(z1, z2)
    loss = sim * inv + var * vr + cov * cv
    loss.backward()
    os.makedirs(OUT, exist_ok=True)
    st.write(os.path.join(OUT, name + ".safetensors"), {
        "z1": z1.detach(), "z2": z2.detach(),
        "loss": loss.detach().reshape(1), "invariance": inv.detach().reshape(1),
        "variance": vr.detach().reshape(1), "covariance": cv.detach().reshape(1),
        "grad.z1": z1.grad, "grad.z2": z2.grad,
    }, {"sim_coeff": repr(sim), "std_coeff": repr(var), "cov_coeff": repr(cov),
        "gamma": repr(gamma), "eps": repr(eps), "torch": torch.__version__})


def main():
    torch.manual_seed(0)
    # Unit-variance features: about half the dimensions under the hinge.
    case("default", 1, 32, 16, 1.0)
    # Small features: every dimension under the hinge (the collapse regime).
    case("collapsing", 2, 32, 16, 0.1)
    # Large features: the hinge is inactive.
    case("spread", 3, 32, 16, 3.0)
    # Other coefficients and gamma.
    case("options", 4, 24, 8, 1.0, sim=10.0, var=5.0, cov=2.0, gamma=2.0, eps=1e-3)


if __name__ == "__main__":
    main()
