#!/usr/bin/python3
"""Golden fixtures for core/eval: solo-learn's weighted kNN and a full-batch
linear probe, in PyTorch 1.13.

Run from the repository root with Debian's python (torch 1.13):

    /usr/bin/python3 tools/golden/gen_eval.py

It writes core/eval/testdata/knn.safetensors and linear.safetensors.

knn.safetensors holds one small dataset with class structure
(train_x [300,32], train_y [300], test_x [100,32], test_y [100], 6 classes)
and, per case <c>, scores.<c> [100,6] (class scores), pred.<c> [100] (top-1
class) and metadata "<c>" = JSON {k, T, distance, top1, top5}. knn_ref below
is a transcription of WeightedKNNClassifier.compute from solo-learn
(solo/utils/knn.py, the version that l2-normalizes for cosine), with one
change: the class ranking uses a stable descending sort, so tied scores
(classes without votes) rank by class index, the tie rule sslrun states.

linear.safetensors holds x [64,16], y [64] (4 classes), init.w [4,16],
init.b [4] and, per case <c>, step<k>.<c>.w / .b after optimizer steps
k = 1 and k = STEPS of full-batch gradient descent: nn.Linear +
F.cross_entropy (mean) + torch.optim.SGD(momentum, weight_decay) with the lr
set before every step by the schedule; metadata "<c>" = JSON case.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

OUT = os.path.join("core", "eval", "testdata")


def knn_ref(train_features, train_targets, test_features, test_targets,
            k, T, distance_fx, epsilon=1e-5, max_distance_matrix_size=int(5e6)):
    """solo-learn WeightedKNNClassifier.compute, returning scores too."""
    if distance_fx == "cosine":
        train_features = F.normalize(train_features)
        test_features = F.normalize(test_features)
    num_classes = torch.unique(test_targets).numel()
    num_train_images = train_targets.size(0)
    num_test_images = test_targets.size(0)
    chunk_size = min(max(1, max_distance_matrix_size // num_train_images), num_test_images)
    k = min(k, num_train_images)
    top1, top5, total = 0.0, 0.0, 0
    all_scores, all_preds = [], []
    retrieval_one_hot = torch.zeros(k, num_classes)
    for idx in range(0, num_test_images, chunk_size):
        features = test_features[idx: min(idx + chunk_size, num_test_images), :]
        targets = test_targets[idx: min(idx + chunk_size, num_test_images)]
        batch_size = targets.size(0)
        if distance_fx == "cosine":
            similarity = torch.mm(features, train_features.t())
        elif distance_fx == "euclidean":
            similarity = 1 / (torch.cdist(features, train_features) + epsilon)
        else:
            raise NotImplementedError
        distances, indices = similarity.topk(k, largest=True, sorted=True)
        candidates = train_targets.view(1, -1).expand(batch_size, -1)
        retrieved_neighbors = torch.gather(candidates, 1, indices)
        retrieval_one_hot.resize_(batch_size * k, num_classes).zero_()
        retrieval_one_hot.scatter_(1, retrieved_neighbors.view(-1, 1), 1)
        if distance_fx == "cosine":
            distances = distances.clone().div_(T).exp_()
        probs = torch.sum(
            torch.mul(retrieval_one_hot.view(batch_size, -1, num_classes),
                      distances.view(batch_size, -1, 1)), 1)
        _, predictions = probs.sort(stable=True, dim=1, descending=True)
        correct = predictions.eq(targets.data.view(-1, 1))
        top1 = top1 + correct.narrow(1, 0, 1).sum().item()
        top5 = top5 + correct.narrow(1, 0, min(5, k)).sum().item()
        total += targets.size(0)
        all_scores.append(probs)
        all_preds.append(predictions[:, 0])
    return top1 / total, top5 / total, torch.cat(all_scores), torch.cat(all_preds)


def clustered(n, dim, classes, centers, noise, gen):
    y = torch.arange(n) % classes
    y = y[torch.randperm(n, generator=gen)]
    x = centers[y] + noise * torch.randn(n, dim, generator=gen)
    return x.float(), y.long()


def gen_knn():
    gen = torch.Generator().manual_seed(20260)
    dim, classes = 32, 6
    centers = torch.randn(classes, dim, generator=gen)
    # Enough noise that neighbourhoods mix classes: scores are non-trivial
    # and top-1 is well below 1.
    train_x, train_y = clustered(300, dim, classes, centers, 3.0, gen)
    test_x, test_y = clustered(100, dim, classes, centers, 3.0, gen)
    tensors = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    meta = {}
    cases = [
        ("solo", 20, 0.07, "cosine"),
        ("lightly", 200, 0.1, "cosine"),
        ("k5_t05", 5, 0.5, "cosine"),
        ("euclid10", 10, None, "euclidean"),
    ]
    for name, k, T, dist in cases:
        top1, top5, scores, preds = knn_ref(train_x, train_y, test_x, test_y, k, T, dist)
        tensors["scores." + name] = scores
        tensors["pred." + name] = preds.long()
        meta[name] = json.dumps({"k": k, "T": T, "distance": dist, "top1": top1, "top5": top5})
        print(f"knn {name}: top1={top1:.3f} top5={top5:.3f}")
    st.write(os.path.join(OUT, "knn.safetensors"), tensors, meta)


STEPS = 5


def gen_linear():
    gen = torch.Generator().manual_seed(20261)
    dim, classes, n = 16, 4, 64
    centers = 2 * torch.randn(classes, dim, generator=gen)
    x, y = clustered(n, dim, classes, centers, 3.0, gen)
    x = x * torch.linspace(0.5, 3.0, dim) + 1.5  # uneven scales so standardizing matters
    lin = torch.nn.Linear(dim, classes)  # default init, drawn from the seeded global RNG
    init_w, init_b = lin.weight.detach().clone(), lin.bias.detach().clone()
    tensors = {"x": x, "y": y, "init.w": init_w, "init.b": init_b}
    meta = {}
    cases = [
        ("cos_wd", dict(lr=0.02, momentum=0.9, weight_decay=5e-4, schedule="cosine", standardize=False)),
        ("const_std", dict(lr=0.2, momentum=0.9, weight_decay=0.0, schedule="constant", standardize=True)),
    ]
    for name, c in cases:
        xin = x
        if c["standardize"]:
            xd = x.double()
            mean = xd.mean(0)
            std = xd.std(0, unbiased=False)
            std[std == 0] = 1
            xin = ((xd - mean) / std).float()
        lin = torch.nn.Linear(dim, classes)
        with torch.no_grad():
            lin.weight.copy_(init_w)
            lin.bias.copy_(init_b)
        opt = torch.optim.SGD(lin.parameters(), lr=c["lr"], momentum=c["momentum"],
                              weight_decay=c["weight_decay"])
        for step in range(STEPS):
            lr = c["lr"]
            if c["schedule"] == "cosine":
                lr = 0.5 * c["lr"] * (1 + math.cos(math.pi * step / STEPS))
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad()
            loss = F.cross_entropy(lin(xin), y)
            loss.backward()
            opt.step()
            if step == 0 or step == STEPS - 1:
                tensors[f"step{step + 1}.{name}.w"] = lin.weight.detach().clone()
                tensors[f"step{step + 1}.{name}.b"] = lin.bias.detach().clone()
        meta[name] = json.dumps(dict(c, steps=STEPS))
        print(f"linear {name}: final loss {loss.item():.4f}")
    st.write(os.path.join(OUT, "linear.safetensors"), tensors, meta)


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    gen_knn()
    gen_linear()


if __name__ == "__main__":
    main()
