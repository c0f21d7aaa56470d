#!/usr/bin/python3
"""Golden fixtures for core/data/augment: torchvision 0.14 functional ops on
float32 CHW tensors in [0,1] (the tensor backend), with fixed parameters.

Run from the repository root with Debian's python (torch + torchvision):

    /usr/bin/python3 tools/golden/gen_augment.py

It writes core/data/augment/testdata/augment_{geom,color,params}.safetensors.
In the first two, each
output tensor has a metadata entry (same name) holding a JSON description of
the op and its parameters; the Go test replays the op from that description,
so the parameter table lives in one place (here). The params file holds
distribution statistics of RandomResizedCrop.get_params (see rrc_stats).
"""
import json
import os
import sys

import torch
import torchvision.transforms.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

OUT = os.path.join("core", "data", "augment", "testdata")


def inputs():
    torch.manual_seed(0)
    rgb = torch.rand(3, 24, 24)
    # Edge cases for the HSV round trip: gray pixels (max == min), ties
    # between channels, pure black/white and saturated primaries.
    rgb[:, 0, 0] = 0.5
    rgb[:, 0, 1] = 0.0
    rgb[:, 0, 2] = 1.0
    rgb[:, 0, 3] = torch.tensor([0.7, 0.7, 0.2])
    rgb[:, 0, 4] = torch.tensor([0.3, 0.9, 0.9])
    rgb[:, 0, 5] = torch.tensor([0.6, 0.1, 0.6])
    rgb[:, 0, 6] = torch.tensor([1.0, 0.0, 0.0])
    rgb[:, 0, 7] = torch.tensor([0.0, 0.0, 1.0])
    big = torch.rand(3, 40, 36)
    gray = torch.rand(1, 28, 28)
    return {"in_rgb": rgb, "in_big": big, "in_gray": gray}


def run(op, x, p):
    if op == "resized_crop":
        return F.resized_crop(x, p["top"], p["left"], p["h"], p["w"], [p["oh"], p["ow"]],
                              interpolation=F.InterpolationMode.BILINEAR, antialias=False)
    if op == "hflip":
        return F.hflip(x)
    if op == "brightness":
        return F.adjust_brightness(x, p["factor"])
    if op == "contrast":
        return F.adjust_contrast(x, p["factor"])
    if op == "saturation":
        return F.adjust_saturation(x, p["factor"])
    if op == "hue":
        return F.adjust_hue(x, p["factor"])
    if op == "grayscale":
        return F.rgb_to_grayscale(x, num_output_channels=x.shape[0])
    if op == "blur":
        return F.gaussian_blur(x, [p["kx"], p["ky"]], [p["sx"], p["sy"]])
    if op == "solarize":
        return F.solarize(x, p["threshold"])
    if op == "normalize":
        return F.normalize(x, p["mean"], p["std"])
    if op == "jitter":
        # The deterministic body of ColorJitter.forward with fixed order and
        # factors.
        fns = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
        vals = [p["b"], p["c"], p["s"], p["hue"]]
        for i in p["order"]:
            x = fns[i](x, vals[i])
        return x
    raise ValueError(op)


GEOM = [
    ("crop_up", "in_rgb", "resized_crop", dict(top=3, left=5, h=13, w=10, oh=24, ow=24)),
    ("crop_down", "in_big", "resized_crop", dict(top=2, left=1, h=37, w=33, oh=16, ow=20)),
    ("crop_mixed", "in_rgb", "resized_crop", dict(top=0, left=0, h=24, w=24, oh=32, ow=12)),
    ("crop_identity", "in_rgb", "resized_crop", dict(top=4, left=3, h=16, w=17, oh=16, ow=17)),
    ("crop_gray_up", "in_gray", "resized_crop", dict(top=4, left=2, h=20, w=25, oh=28, ow=28)),
    ("crop_gray_down", "in_gray", "resized_crop", dict(top=0, left=0, h=28, w=28, oh=11, ow=11)),
    ("hflip", "in_rgb", "hflip", {}),
    ("blur_k3_s1", "in_rgb", "blur", dict(kx=3, ky=3, sx=1.0, sy=1.0)),
    ("blur_k5_s05", "in_rgb", "blur", dict(kx=5, ky=5, sx=0.5, sy=0.5)),
    ("blur_k23_s17", "in_rgb", "blur", dict(kx=23, ky=23, sx=1.7, sy=1.7)),
    ("blur_k7x3", "in_rgb", "blur", dict(kx=7, ky=3, sx=1.2, sy=0.8)),
    ("blur_gray_k5_s2", "in_gray", "blur", dict(kx=5, ky=5, sx=2.0, sy=2.0)),
    ("normalize", "in_rgb", "normalize", dict(mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616])),
    ("normalize_gray", "in_gray", "normalize", dict(mean=[0.1307], std=[0.3081])),
]

COLOR = [
    ("brightness_13", "in_rgb", "brightness", dict(factor=1.3)),
    ("brightness_06", "in_rgb", "brightness", dict(factor=0.6)),
    ("contrast_14", "in_rgb", "contrast", dict(factor=1.4)),
    ("contrast_05", "in_rgb", "contrast", dict(factor=0.5)),
    ("contrast_gray_07", "in_gray", "contrast", dict(factor=0.7)),
    ("saturation_15", "in_rgb", "saturation", dict(factor=1.5)),
    ("saturation_03", "in_rgb", "saturation", dict(factor=0.3)),
    ("hue_p01", "in_rgb", "hue", dict(factor=0.1)),
    ("hue_m035", "in_rgb", "hue", dict(factor=-0.35)),
    ("hue_p05", "in_rgb", "hue", dict(factor=0.5)),
    ("hue_m05", "in_rgb", "hue", dict(factor=-0.5)),
    ("hue_gray", "in_gray", "hue", dict(factor=0.2)),
    ("grayscale", "in_rgb", "grayscale", {}),
    ("solarize_05", "in_rgb", "solarize", dict(threshold=0.5)),
    ("solarize_gray_03", "in_gray", "solarize", dict(threshold=0.3)),
    ("jitter_chain", "in_rgb", "jitter", dict(order=[2, 0, 3, 1], b=1.2, c=0.7, s=1.4, hue=-0.05)),
    ("jitter_chain2", "in_rgb", "jitter", dict(order=[3, 1, 0, 2], b=0.7, c=1.3, s=0.6, hue=0.08)),
]


# Parameter sampling cannot match torch's RNG stream, only its
# distribution: for each (image size, scale, ratio), the mean and standard
# deviation of (h, w, h*w/area, top, left) over STAT_N draws of
# RandomResizedCrop.get_params.
STAT_N = 20000
RRC_STATS = [
    ("rrc_cifar", 32, 32, (0.2, 1.0), (3 / 4, 4 / 3)),
    ("rrc_mnist", 28, 28, (0.3, 1.0), (3 / 4, 4 / 3)),
    ("rrc_default_wide", 24, 40, (0.08, 1.0), (3 / 4, 4 / 3)),
]


def rrc_stats():
    from torchvision.transforms import RandomResizedCrop
    torch.manual_seed(1)
    tensors, meta = {}, {}
    for name, h, w, scale, ratio in RRC_STATS:
        img = torch.zeros(1, h, w)
        rows = []
        for _ in range(STAT_N):
            i, j, hh, ww = RandomResizedCrop.get_params(img, list(scale), list(ratio))
            rows.append([hh, ww, hh * ww / (h * w), i, j])
        a = torch.tensor(rows, dtype=torch.float64)
        tensors[name] = torch.stack([a.mean(0), a.std(0)]).float()
        meta[name] = json.dumps(dict(op="rrc_stats", h=h, w=w, scale=list(scale), ratio=list(ratio), n=STAT_N))
    return tensors, meta


def main():
    os.makedirs(OUT, exist_ok=True)
    tensors, meta = rrc_stats()
    path = os.path.join(OUT, "augment_params.safetensors")
    meta["generator"] = "tools/golden/gen_augment.py"
    st.write(path, tensors, metadata=meta)
    print(path, os.path.getsize(path), "bytes")
    ins = inputs()
    for fname, cases in (("augment_geom.safetensors", GEOM), ("augment_color.safetensors", COLOR)):
        tensors, meta = {}, {"generator": "tools/golden/gen_augment.py",
                             "torch": torch.__version__,
                             "torchvision": __import__("torchvision").__version__}
        used = set()
        for name, src, op, p in cases:
            out = run(op, ins[src].clone(), p)
            tensors[name] = out.contiguous().float()
            meta[name] = json.dumps(dict(op=op, input=src, **p), sort_keys=True)
            used.add(src)
        for src in sorted(used):
            tensors[src] = ins[src]
        path = os.path.join(OUT, fname)
        st.write(path, tensors, metadata=meta)
        print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
