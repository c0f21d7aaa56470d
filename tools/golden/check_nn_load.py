#!/usr/bin/python3
"""Load a core/nn weight file into the PyTorch model strictly and compare a
forward pass with the one Go computed.

    /usr/bin/python3 tools/golden/check_nn_load.py STATE.safetensors IO.safetensors [STATE2 IO2 ...]

STATE is written by nn.Model.Save: keys "backbone.*", "projector.*",
"predictor.*" (PyTorch state_dict names; num_batches_tracked as I64) and the
ModelSpec JSON in metadata "spec". The torch model is rebuilt from the spec
with gen_nn.build_model (whose W1/W2/W3 state_dicts gen_nn checks against
torch_baseline.build_models) and each part loaded with
load_state_dict(strict=True). IO holds the input "x" and Go's outputs
"eval/{feat,z,p}" (evaluation mode, running statistics) and
"train/{feat,z,p}" (training mode, batch statistics). Exit status 0 if every
output matches within max|diff| <= 1e-4 * max(1, max|ref|), else 1.
Used by core/nn's TestTorchLoadsGoWeights (skipped without torch).
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_nn  # noqa: E402
import st  # noqa: E402

TOL = 1e-4


def check(state_path, io_path):
    print(f"== {state_path}")
    state, meta = st.read(state_path)
    io, _ = st.read(io_path)
    spec = json.loads(meta["spec"])
    parts = dict(zip(["backbone", "projector", "predictor"], gen_nn.build_model(spec)))
    for name, mod in parts.items():
        pre = name + "."
        sd = {k[len(pre):]: torch.from_numpy(np.array(v)) for k, v in state.items() if k.startswith(pre)}
        mod.load_state_dict(sd, strict=True)  # raises on missing/unexpected keys or shape mismatch
        for k, v in mod.state_dict().items():
            if v.dtype != sd[k].dtype:
                raise SystemExit(f"{pre}{k}: file dtype {sd[k].dtype}, torch {v.dtype}")
    used = sum(len(m.state_dict()) for m in parts.values())
    if used != len(state):
        raise SystemExit(f"file has {len(state)} tensors, the model {used}")
    x = torch.from_numpy(np.array(io["x"]))
    ok = True
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    for mode in ("eval", "train"):
        for m in parts.values():
            m.train(mode == "train")
        feat = parts["backbone"](x)
        z = parts["projector"](feat)
        p = parts["predictor"](z)
        for key, t in (("feat", feat), ("z", z), ("p", p)):
            ref = io[f"{mode}/{key}"]
            d = float(np.max(np.abs(t.numpy() - ref)))
            scale = max(1.0, float(np.max(np.abs(ref))))
            good = d <= TOL * scale
            ok &= good
            print(f"{mode}/{key}: shape {list(ref.shape)} max|torch-go| {d:.3g} (scale {scale:.3g}) {'ok' if good else 'FAIL'}")
    print(f"strict load of {len(state)} tensors ({sum(p.numel() for m in parts.values() for p in m.parameters())} parameters): ok")
    return ok


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        raise SystemExit(__doc__)
    ok = True
    for i in range(0, len(args), 2):
        ok &= check(args[i], args[i + 1])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
