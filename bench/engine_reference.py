"""The networks of `rstpm bench engine` in PyTorch, ONNX Runtime and OpenVINO (developer-only).

Same networks, same inputs: ResNet18 and ResNet50 to layer3, EfficientNet-Lite0 and Lite2 to
their stride-16 tap (taps 0..2), BatchNorm in eval mode (ORT and OpenVINO fold it themselves),
1x3xSxS and 8x3xSxS random inputs. Lite weights are the real checkpoints when the weights
directory has them, else random (timing does not depend on the values). Prints
`RESULT <framework> <network> <batch> <ms/image>` lines that bench/engine.sh reads.
Usage: /work/venv/bin/python bench/engine_reference.py [--threads 2] [--batch 1,8] [--iterations 5] [--size 256]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "fixtures"))
from reference_backbones import EfficientNetLite  # noqa: E402

LITE_FILES = {"efficientnet-lite0": "efficientnet-lite0-57934424.pth", "efficientnet-lite2": "efficientnet-lite2-9656183e.pth"}


def weights_dir():
    if os.environ.get("RSTPM_WEIGHTS"):
        return os.environ["RSTPM_WEIGHTS"]
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "rstpm", "weights")


class ResNetTo3(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, x):
        m = self.m
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        a = m.layer1(x)
        b = m.layer2(a)
        return a, b, m.layer3(b)


class LiteTo3(nn.Module):
    def __init__(self, lite):
        super().__init__()
        self.lite = lite
        self.last = lite.taps[2]

    def forward(self, x):
        lite = self.lite
        x = torch.nn.functional.relu6(lite._bn0(lite._conv_stem(x)))
        out = []
        for i, block in enumerate(lite._blocks[: self.last + 1]):
            x = block(x)
            if i in lite.taps:
                out.append(x)
        return tuple(out)


def networks():
    yield "resnet18-layer3", ResNetTo3(torchvision.models.resnet18())
    yield "resnet50-layer3", ResNetTo3(torchvision.models.resnet50())
    for name, file in LITE_FILES.items():
        path = os.path.join(weights_dir(), file)
        if not os.path.exists(path):
            sys.exit(f"{path} missing: run `rstpm weights fetch` first")
        yield name, LiteTo3(EfficientNetLite(torch.load(path, map_location="cpu", weights_only=False)))


def best_ms(run, iterations):
    run()
    best = float("inf")
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        best = min(best, (time.perf_counter() - start) * 1000)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    import onnxruntime as ort
    import openvino as ov
    core = ov.Core()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    tmp = tempfile.mkdtemp(prefix="rstpm-bench-")
    for name, model in networks():
        model.eval()
        onnx_path = os.path.join(tmp, name + ".onnx")
        dummy = torch.randn(1, 3, args.size, args.size)
        torch.onnx.export(model, (dummy,), onnx_path, input_names=["input"], dynamic_axes={"input": {0: "batch"}},
                          opset_version=17, dynamo=False)
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        compiled = core.compile_model(core.read_model(onnx_path), "CPU",
                                      {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY",
                                       # f32 as rstpm and PyTorch: on CPUs with avx512_bf16 OpenVINO
                                       # would otherwise run bf16 (1.6x faster here, not comparable).
                                       "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()
        for batch in batches:
            x = torch.randn(batch, 3, args.size, args.size)
            xn = x.numpy()
            results = {
                "pytorch": best_ms(lambda: model(x), args.iterations),
                "onnxruntime": best_ms(lambda: session.run(None, {"input": xn}), args.iterations),
                "openvino": best_ms(lambda: request.infer({0: xn}), args.iterations),
            }
            for framework, ms in results.items():
                print(f"RESULT {framework:<12} {name:<18} {batch:>3} {ms / batch:10.2f}", flush=True)


if __name__ == "__main__":
    main()
