"""Training-free anomaly maps on rstpm's teacher features, per defect type (developer-only).

The diagnostic behind docs/accuracy.md, row 5: which signal in EfficientNet-Lite2's stride-8 +
stride-16 features (PatchCore's features, from bench/patchcore.py) localises a defect type,
without any training. For each test image it scores every stride-8 position by
  * "global gaussian": the Mahalanobis distance to one Gaussian of all training positions
    (covariance + 0.01 I);
  * "own-median": the Euclidean distance to the image's own median feature (image context);
  * "patchcore": the distance to the nearest patch of a 1% greedy coreset (as bench/patchcore.py).
Maps are upsampled to 256x256 and smoothed (sigma 4); the image score is the map's maximum. It
prints image / pixel AUROC overall and per defect type.
Usage: /work/refvenv/bin/python bench/feature_density.py --data CATEGORY_DIR [--no-patchcore]
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import patchcore as pc  # noqa: E402

RIDGE = 0.01


def report(name, small, labels, kinds, masks):
    full = F.interpolate(small, size=(pc.SIZE, pc.SIZE), mode="bilinear", align_corners=False)[:, 0].numpy()
    maps = [gaussian_filter(m.astype(np.float64), sigma=pc.SIGMA) for m in full]
    scores = np.array([m.max() for m in maps])
    pixel = roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in maps]))
    per_type = []
    for kind in sorted(set(kinds) - {"good"}):
        keep = [i for i, k in enumerate(kinds) if k in ("good", kind)]
        kind_pixel = roc_auc_score(np.concatenate([masks[i].ravel() for i in keep]), np.concatenate([maps[i].ravel() for i in keep]))
        per_type.append(f"{kind} {roc_auc_score(labels[keep], scores[keep]):.3f}/{kind_pixel:.3f}")
    print(f"{name}: image {roc_auc_score(labels, scores):.3f} pixel {pixel:.3f} | " + ", ".join(per_type), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="category folder, MVTec AD layout")
    parser.add_argument("--no-patchcore", action="store_true", help="skip the (slow) coreset")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    features = pc.PatchFeatures("lite2")
    samples = pc.test_samples(args.data)
    train = pc.extract(features, pc.images_in(os.path.join(args.data, "train", "good")))
    test = pc.extract(features, [s[0] for s in samples])
    labels = np.array([s[2] for s in samples])
    kinds = [s[1] for s in samples]
    masks = [pc.load_mask(s[3]) for s in samples]
    n, c, h, w = test.shape

    bank = pc.as_patches(train).double()
    mean = bank.mean(0)
    centred = bank - mean
    precision = torch.linalg.inv(centred.T @ centred / len(bank) + RIDGE * torch.eye(c, dtype=torch.float64))
    queries = pc.as_patches(test).double() - mean
    mahalanobis = ((queries @ precision) * queries).sum(1).clamp_min(0).sqrt().float().reshape(n, 1, h, w)
    report("global gaussian", mahalanobis, labels, kinds, masks)

    median = test.flatten(2).median(2).values[:, :, None, None]
    report("own-median", (test - median).pow(2).sum(1, keepdim=True).sqrt(), labels, kinds, masks)

    if not args.no_patchcore:
        coreset = pc.as_patches(train)[pc.greedy_coreset(pc.as_patches(train), 0.01, 0)]
        report("patchcore", pc.nearest_distance(pc.as_patches(test), coreset).reshape(n, 1, h, w), labels, kinds, masks)


if __name__ == "__main__":
    main()
