"""A PatchCore baseline on rstpm's own teacher features (developer-only; never a CI dependency).

PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022) on
the ImageNet EfficientNet-Lite checkpoints rstpm uses as teachers, so that the accuracy bench
(bench/accuracy.sh) compares methods on the same features:
  * input: RGB (grey replicated to 3 channels), resized to 256x256 (PIL bilinear, as rstpm's
    resampler), ImageNet mean/std;
  * features: the teacher's taps at strides 8 and 16 (the last block at each resolution:
    Lite2 blocks 6 and 14, 48@32 and 120@16; Lite0 blocks 4 and 10, 40@32 and 112@16), each
    through a 3x3 local average (avg_pool k 3, stride 1, pad 1); the stride-16 one upsampled
    bilinearly to 32x32; concatenated (168 channels for Lite2), one patch per position;
  * memory bank: every patch of every train/good image; reduced to a coreset (--coreset, 1% as
    the paper) by greedy k-center selection on a random projection to 128 dimensions;
  * test: each patch's Euclidean distance to its nearest coreset patch gives a 32x32 map,
    upsampled bilinearly to 256x256 and smoothed with a Gaussian (sigma 4, scipy); the image
    score is the map's maximum.
Metrics as ../shared/docs/metrics.md defines them, with the functions of
scripts/fixtures/make_metric_fixtures.py (the references the Swift metrics are tested against):
image AUROC, pixel AUROC pooled over all test pixels (masks resized nearest, > 127), AUPRO to
FPR 0.3 (normalised), image-level F1-max.

Prints `RESULT patchcore <category> image_auroc=... pixel_auroc=... aupro=... f1=... seconds=...`
per category (seconds: memory bank + coreset + test inference, metrics excluded) and, with
--json, writes every figure (also per defect type, and the time split) to a file.
Usage: /work/refvenv/bin/python bench/patchcore.py --data CATEGORY_DIR [--data ...] [--teacher lite2]
         [--coreset 0.01] [--seed 0] [--threads 2] [--json OUT.json]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts", "fixtures"))
from make_metric_fixtures import exact_aupro, f1_max  # noqa: E402
from reference_backbones import EfficientNetLite  # noqa: E402
from engine_reference import weights_dir  # noqa: E402  (same weights lookup as rstpm and the other benches)

# The checkpoint names rstpm knows (Sources/Backbones/BackboneKind.swift).
TEACHER_FILES = {
    "lite0": "efficientnet-lite0-57934424.pth",
    "lite1": "efficientnet-lite1-77cc7160.pth",
    "lite2": "efficientnet-lite2-9656183e.pth",
}
SIZE = 256
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PROJECTION_DIMS = 128
SIGMA = 4
BATCH = 8


# --- data (MVTec AD layout) ---

def images_in(folder):
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith("."))


def test_samples(root):
    """[(image path, defect type, label, mask path or None)], "good" first, as rstpm eval."""
    test = os.path.join(root, "test")
    types = sorted(os.listdir(test), key=lambda t: (t != "good", t))
    samples = []
    for kind in types:
        if not os.path.isdir(os.path.join(test, kind)):
            continue
        for image in images_in(os.path.join(test, kind)):
            mask = None
            if kind != "good":
                stem = os.path.splitext(os.path.basename(image))[0]
                mask = os.path.join(root, "ground_truth", kind, stem + "_mask.png")
                if not os.path.exists(mask):
                    sys.exit(f"{image}: its ground-truth mask {mask} does not exist")
            samples.append((image, kind, 0 if kind == "good" else 1, mask))
    return samples


def load_image(path):
    """(3, 256, 256) float32, ImageNet-normalised; grey images replicated to 3 channels."""
    image = Image.open(path).convert("RGB")
    if image.size != (SIZE, SIZE):
        image = image.resize((SIZE, SIZE), Image.BILINEAR)
    x = np.asarray(image, dtype=np.float32) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)


def load_mask(path):
    """(256, 256) bool: nearest resize (PIL NEAREST = rstpm's GroundTruthMask.nearest), > 127."""
    if path is None:
        return np.zeros((SIZE, SIZE), dtype=bool)
    mask = Image.open(path).convert("L")
    if mask.size != (SIZE, SIZE):
        mask = mask.resize((SIZE, SIZE), Image.NEAREST)
    return np.asarray(mask) > 127


# --- features ---

class PatchFeatures:
    """The teacher's stride-8 and stride-16 taps, 3x3-averaged, joined at stride 8."""

    def __init__(self, teacher):
        path = os.path.join(weights_dir(), TEACHER_FILES[teacher])
        if not os.path.exists(path):
            sys.exit(f"{path} missing: run `rstpm weights fetch` first (or set RSTPM_WEIGHTS)")
        self.net = EfficientNetLite(torch.load(path, map_location="cpu", weights_only=False)).eval()
        # taps: the last block at strides 4, 8, 16, 32; PatchCore takes the middle two.
        self.blocks = (self.net.taps[1], self.net.taps[2])
        self.channels = sum(self.net.specs[b][2] for b in self.blocks)

    @torch.no_grad()
    def __call__(self, x):
        """(N, 3, 256, 256) -> (N, C, 32, 32)."""
        net = self.net
        y = F.relu6(net._bn0(net._conv_stem(x)))
        taps = []
        for i, block in enumerate(net._blocks[: self.blocks[1] + 1]):
            y = block(y)
            if i in self.blocks:
                taps.append(F.avg_pool2d(y, 3, stride=1, padding=1))
        size = taps[0].shape[-2:]
        taps[1] = F.interpolate(taps[1], size=size, mode="bilinear", align_corners=False)
        return torch.cat(taps, 1)


def extract(features, paths):
    """(len(paths), C, 32, 32) float32 tensor."""
    out = []
    for start in range(0, len(paths), BATCH):
        batch = np.stack([load_image(p) for p in paths[start:start + BATCH]])
        out.append(features(torch.from_numpy(batch)))
    return torch.cat(out)


def as_patches(maps):
    """(N, C, H, W) -> (N * H * W, C)."""
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]).contiguous()


# --- coreset ---

def greedy_coreset(bank, fraction, seed):
    """Indices of a greedy k-center coreset of `bank` (M, C): each step adds the patch farthest
    from the ones already chosen, with distances measured after a random Gaussian projection to
    128 dimensions (Johnson-Lindenstrauss, as PatchCore); the first patch is random (seeded)."""
    count = max(1, int(round(len(bank) * fraction)))
    generator = torch.Generator().manual_seed(seed)
    if bank.shape[1] > PROJECTION_DIMS:
        projection = torch.randn(bank.shape[1], PROJECTION_DIMS, generator=generator) / PROJECTION_DIMS ** 0.5
        points = bank @ projection
    else:
        points = bank
    norms = (points * points).sum(1)
    chosen = [int(torch.randint(len(points), (1,), generator=generator))]
    nearest = torch.full((len(points),), float("inf"))
    for _ in range(count - 1):
        c = points[chosen[-1]]
        distance = norms - 2 * (points @ c) + norms[chosen[-1]]
        torch.minimum(nearest, distance, out=nearest)
        chosen.append(int(torch.argmax(nearest)))
    return torch.tensor(chosen)


def nearest_distance(queries, memory, chunk=8192):
    """Euclidean distance of each query row to its nearest memory row."""
    memory_norms = (memory * memory).sum(1)
    out = torch.empty(len(queries))
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        d2 = (q * q).sum(1, keepdim=True) - 2 * (q @ memory.T) + memory_norms
        out[start:start + chunk] = d2.min(1).values.clamp_min(0).sqrt()
    return out


# --- one category ---

def run_category(root, features, fraction, seed):
    name = os.path.basename(os.path.normpath(root))
    train = images_in(os.path.join(root, "train", "good"))
    if not train:
        sys.exit(f"{root}/train/good has no images")
    samples = test_samples(root)
    start = time.perf_counter()
    bank = as_patches(extract(features, train))
    bank_seconds = time.perf_counter() - start
    coreset = bank[greedy_coreset(bank, fraction, seed)]
    fit_seconds = time.perf_counter() - start

    test_start = time.perf_counter()
    maps, scores = [], []
    for first in range(0, len(samples), BATCH):
        batch = [s[0] for s in samples[first:first + BATCH]]
        feats = extract(features, batch)
        n, _, h, w = feats.shape
        small = nearest_distance(as_patches(feats), coreset).reshape(n, 1, h, w)
        full = F.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0].numpy()
        for m in full:
            m = gaussian_filter(m.astype(np.float64), sigma=SIGMA).astype(np.float32)
            maps.append(m)
            scores.append(float(m.max()))
    test_seconds = time.perf_counter() - test_start

    labels = np.array([s[2] for s in samples])
    kinds = [s[1] for s in samples]
    scores = np.array(scores, dtype=np.float64)
    masks = [load_mask(s[3]) for s in samples]
    result = {
        "method": "patchcore", "category": name, "data": os.path.abspath(root),
        "image_auroc": float(roc_auc_score(labels, scores)),
        "pixel_auroc": float(roc_auc_score(np.concatenate([m.ravel() for m in masks]),
                                           np.concatenate([m.ravel() for m in maps]).astype(np.float64))),
        "aupro": float(exact_aupro([m.astype(np.float64) for m in maps], masks)[0]),
        "f1": f1_max(scores, labels)[0],
        "seconds": fit_seconds + test_seconds,
        "bank_seconds": bank_seconds, "coreset_seconds": fit_seconds - bank_seconds, "test_seconds": test_seconds,
        "train_images": len(train), "test_images": len(samples),
        "memory_bank": len(bank), "coreset_size": len(coreset), "feature_channels": int(bank.shape[1]),
        "per_type_image_auroc": {},
    }
    for kind in sorted(set(kinds) - {"good"}):
        keep = np.array([k in ("good", kind) for k in kinds])
        result["per_type_image_auroc"][kind] = float(roc_auc_score(labels[keep], scores[keep]))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", action="append", required=True, help="category folder, MVTec AD layout (repeatable)")
    parser.add_argument("--teacher", choices=sorted(TEACHER_FILES), default="lite2")
    parser.add_argument("--coreset", type=float, default=0.01, help="coreset fraction of the memory bank")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the figures of every category here")
    args = parser.parse_args()
    if not 0 < args.coreset <= 1:
        parser.error("--coreset must be in (0, 1]")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    features = PatchFeatures(args.teacher)
    results = []
    for root in args.data:
        r = run_category(root, features, args.coreset, args.seed)
        r.update(teacher=args.teacher, coreset_fraction=args.coreset, seed=args.seed, threads=args.threads)
        results.append(r)
        print(f"RESULT patchcore {r['category']} image_auroc={r['image_auroc']:.4f} pixel_auroc={r['pixel_auroc']:.4f} "
              f"aupro={r['aupro']:.4f} f1={r['f1']:.4f} seconds={r['seconds']:.1f}", flush=True)
        print(f"  {r['category']}: {r['train_images']} train images -> bank {r['memory_bank']} x {r['feature_channels']}, "
              f"coreset {r['coreset_size']}; bank {r['bank_seconds']:.1f} s, coreset {r['coreset_seconds']:.1f} s, "
              f"test {r['test_seconds']:.1f} s ({r['test_images']} images); per type: "
              + ", ".join(f"{k} {v:.3f}" for k, v in r["per_type_image_auroc"].items()), file=sys.stderr, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"teacher": args.teacher, "coreset": args.coreset, "seed": args.seed, "categories": results}, f, indent=2)


if __name__ == "__main__":
    main()
