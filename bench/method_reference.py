"""The work of `rstpm bench method` in PyTorch and OpenVINO (developer-only).

Training: the same networks as rstpm's default configuration (T1 EfficientNet-Lite0, T2 Lite2
frozen in eval mode; S1 = Lite0 in train mode; S2 reverse-distillation with "*+" attention; D the
U-Net at 64x64) on the batches `rstpm bench method --export` wrote:
  phase 1: teachers forward, S1/S2 forward + backward of the six level losses, SGD step;
  phase 2: S-T maps forward (no grad), D forward + backward of the focal loss, Adam step.
Inference (with --model): the complete RSTPM + D pipeline (Eq. 1) with the bundle's trained
weights (read from weights.safetensors with struct + json), in PyTorch (eval) and in OpenVINO
(exported through ONNX, f32); its final maps are compared with rstpm's for the exported images.
PyTorch runs twice: NCHW as written ("pytorch") and channels_last ("pytorch-cl").
Prints `RESULT <framework> <what> <batch> <value>` lines that bench/method.sh reads
(train-*: images/s; infer: ms/image).
Usage: /work/venv/bin/python bench/method_reference.py --batches FILE [--model DIR] [--threads 2] [--steps 3]
"""
import argparse
import copy
import json
import os
import struct
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts", "fixtures"))
from make_rstpm_fixtures import S2, UNet, focal, level_distance  # noqa: E402
from reference_backbones import EfficientNetLite  # noqa: E402
from engine_reference import LITE_FILES, weights_dir  # noqa: E402  (same weights lookup as bench/engine.sh)


def read_safetensors(path):
    """{name: float32 tensor} from a safetensors file (8-byte header length, JSON header, data)."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        assert entry["dtype"] == "F32", (name, entry["dtype"])
        start, end = entry["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(data[start:end], dtype=np.float32).copy()).reshape(entry["shape"])
    return tensors


def taps(lite, x, count):
    """Taps 0..count-1 of an EfficientNetLite (strides 4, 8, 16, 32), running only the blocks needed."""
    x = F.relu6(lite._bn0(lite._conv_stem(x)))
    out = []
    for i, block in enumerate(lite._blocks[: lite.taps[count - 1] + 1]):
        x = block(x)
        if i in lite.taps:
            out.append(x)
    return out


class RSTPM(nn.Module):
    """Teachers, students and D; `forward` gives the six level maps, `final` the Eq. 1 map."""

    def __init__(self, t1, t2, s1, s2, d, means, size, d_size, smoothing=0.0):
        super().__init__()
        self.t1, self.t2, self.s1, self.s2, self.d = t1, t2, s1, s2, d
        self.register_buffer("means", means.reshape(1, 3, 1, 1))
        self.size, self.d_size = size, d_size
        # The S-T map's Gaussian blur (`studentTeacherSmoothing`, as MapFusion.smoothed): taps to
        # 4 sigma, borders reflected as scipy's "reflect" (d c b a | a b c d), by index so that it
        # exports to ONNX.
        self.radius = int(round(4 * smoothing)) if smoothing > 0 else 0
        if self.radius:
            t = torch.arange(-self.radius, self.radius + 1, dtype=torch.float32)
            taps = torch.exp(-t * t / (2 * smoothing * smoothing))
            self.register_buffer("taps", taps / taps.sum())

            def reflected(n):
                period = 2 * n
                return torch.tensor([(j if j < n else period - 1 - j) for j in ((i - self.radius) % period for i in range(n + 2 * self.radius))])
            self.register_buffer("rows", reflected(size[0]))
            self.register_buffer("columns", reflected(size[1]))

    def smoothed(self, m):
        if not self.radius:
            return m
        m = F.conv2d(m.index_select(3, self.columns), self.taps.view(1, 1, 1, -1))
        return F.conv2d(m.index_select(2, self.rows), self.taps.view(1, 1, -1, 1))

    def level_maps(self, x):
        with torch.no_grad():
            f1 = taps(self.t1, x, 4)
            f2 = taps(self.t2, x, 3)
        s1 = taps(self.s1, x, 3)
        s2 = self.s2(f1[3], [f2[2], f2[1]])
        return [level_distance(f1[i], s1[i]) for i in range(3)] + [level_distance(f2[2 - i], s2[i]) for i in range(3)]

    def sums(self, maps, size):
        up = [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps]
        return torch.cat([up[0] + up[5], up[1] + up[4], up[2] + up[3]], 1)

    def d_input(self, maps):
        return self.sums(maps, self.d_size) / self.means.clamp_min(1e-12)

    def forward(self, x):
        maps = self.level_maps(x)
        a = self.sums(maps, self.size)
        st = self.smoothed(a[:, 0:1] * a[:, 1:2] * a[:, 2:3])
        omega7 = F.interpolate(self.d(self.d_input(maps)), size=self.size, mode="bilinear", align_corners=False)
        return st * omega7


def build(model_dir, size):
    lite = {name: torch.load(os.path.join(weights_dir(), file), map_location="cpu", weights_only=False) for name, file in LITE_FILES.items()}
    t1, t2 = EfficientNetLite(lite["efficientnet-lite0"]), EfficientNetLite(lite["efficientnet-lite2"])
    s1 = copy.deepcopy(t1)  # the timing does not depend on the values
    # S2: from T1's stride-32 tap to T2's taps at strides 16, 8, 4 (specs: (in, expanded, out, kernel, stride)).
    s2 = S2("rd", t1.specs[t1.taps[3]][2], [t2.specs[t2.taps[i]][2] for i in (2, 1, 0)], "*+", 64)
    d = UNet(32, 4)
    means, smoothing = torch.ones(3), 0.0
    if model_dir:
        state = read_safetensors(os.path.join(model_dir, "weights.safetensors"))
        manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
        c = manifest["configuration"]
        assert (c["studentVariant"], c["attention"], c["attentionHiddenChannels"], c["discriminatorBaseWidth"], c["discriminatorLevels"],
                c["teacher1"], c["teacher2"]) == ("reverse-distillation", "*+", 64, 32, 4, "efficientnet-lite0", "efficientnet-lite2"), \
            "this reference builds the default configuration only"

        def part(prefix):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        s1.load_state_dict(part("student1."))
        s2.load_state_dict(part("student2."))
        d.load_state_dict(part("discriminator."))
        means = state["statistics.discriminator_input_mean"]
        smoothing = float(c.get("studentTeacherSmoothing", 0))
    return RSTPM(t1, t2, s1, s2, d, means, (size, size), (size // 4, size // 4), smoothing)


def train_rate(step, batch, steps):
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


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
    parser.add_argument("--batches", required=True, help="file written by `rstpm bench method --export`")
    parser.add_argument("--model", help="bundle directory (inference timing)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--infer-batch", default="1,8")
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = read_safetensors(args.batches)
    x, pseudo, mask = batches["train.input"], batches["train.pseudo_input"], batches["train.mask"]
    batch, size = x.shape[0], x.shape[2]
    # PyTorch eager as written (NCHW) and with channels_last tensors, its faster CPU layout for
    # depthwise and transposed convolutions.
    for framework, layout in (("pytorch", torch.contiguous_format), ("pytorch-cl", torch.channels_last)):
        net = build(args.model, size).to(memory_format=layout)
        xl, pseudol = x.to(memory_format=layout), pseudo.to(memory_format=layout)

        # Phase 1.
        net.t1.eval(), net.t2.eval(), net.s1.train(), net.s2.train()
        sgd = torch.optim.SGD(list(net.s1.parameters()) + list(net.s2.parameters()), lr=0.4, momentum=0.9, weight_decay=1e-4)

        def student_step():
            sgd.zero_grad()
            loss = sum(m.mean() for m in net.level_maps(xl))
            loss.backward()
            sgd.step()
        print(f"RESULT {framework:<10} train-students      {batch} {train_rate(student_step, batch, args.steps):9.2f}", flush=True)

        # Phase 2.
        net.s1.eval(), net.s2.eval(), net.d.train()
        adam = torch.optim.Adam(net.d.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4)

        def discriminator_step():
            with torch.no_grad():
                d_in = net.d_input(net.level_maps(pseudol))
            adam.zero_grad()
            loss = focal(net.d(d_in), mask)
            loss.backward()
            adam.step()
        print(f"RESULT {framework:<10} train-discriminator {batch} {train_rate(discriminator_step, batch, args.steps):9.2f}", flush=True)

    if not args.model:
        return
    # Inference with the trained weights (reload: phase 1/2 above changed S1, S2, D).
    net = build(args.model, size).eval()
    torch.set_grad_enabled(False)
    probe = batches["infer.input"]
    reference = batches["infer.final"]
    final = net(probe)
    difference = ((final - reference).abs().max() / reference.abs().max()).item()
    print(f"pytorch final map vs rstpm: max relative difference {difference:.2e} (max {reference.max().item():.4g})", flush=True)
    import openvino as ov
    onnx_path = os.path.join(tempfile.mkdtemp(prefix="rstpm-bench-"), "rstpm.onnx")
    torch.onnx.export(net, (probe[:1],), onnx_path, input_names=["input"], dynamic_axes={"input": {0: "batch"}}, opset_version=17, dynamo=False)
    # f32 as rstpm and PyTorch (OpenVINO would pick bf16 on CPUs that have it: faster, ~4% off).
    compiled = ov.Core().compile_model(onnx_path, "CPU", {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY",
                                                          "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    # What a user gets without setting anything: bf16 on CPUs with avx512_bf16 or AMX.
    # Under ONEDNN_MAX_CPU_ISA=AVX2 OpenVINO still picks bf16 from the CPU flags and then cannot
    # build it; a CPU without AVX-512 would get f32, which the f32 column already shows.
    try:
        compiled_default = ov.Core().compile_model(onnx_path, "CPU", {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"})
        print(f"openvino default precision: {compiled_default.get_property('INFERENCE_PRECISION_HINT')}", flush=True)
        request_default = compiled_default.create_infer_request()
    except RuntimeError as error:
        print(f"openvino default precision: cannot compile here ({next((line for line in str(error).splitlines() if 'could not' in line), 'compile error')[:100]}); its column is left empty", flush=True)
        request_default = None
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    for name, run in [("openvino", lambda x: request.infer({0: x})[0])] + ([("openvino-default", lambda x: request_default.infer({0: x})[0])] if request_default else []) + [
                      ("onnxruntime", lambda x: session.run(None, {"input": x})[0])]:
        other = torch.from_numpy(run(probe.numpy()).copy())
        difference = ((other - reference).abs().max() / reference.abs().max()).item()
        print(f"{name} final map vs rstpm: max relative difference {difference:.2e}", flush=True)
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(5)
    for b in [int(v) for v in args.infer_batch.split(",")]:
        inputs = torch.randn(b, 3, size, size, generator=generator)
        inputs_cl = inputs.to(memory_format=torch.channels_last)
        numpy_inputs = inputs.numpy()
        ms = {"pytorch": best_ms(lambda: net(inputs), args.iterations),
              "pytorch-cl": best_ms(lambda: net_cl(inputs_cl), args.iterations),
              "openvino": best_ms(lambda: request.infer({0: numpy_inputs}), args.iterations),
              "onnxrt": best_ms(lambda: session.run(None, {"input": numpy_inputs}), args.iterations)}
        if request_default:
            ms["ov-default"] = best_ms(lambda: request_default.infer({0: numpy_inputs}), args.iterations)
        for framework, value in ms.items():
            print(f"RESULT {framework:<10} infer               {b} {value / b:9.2f}", flush=True)


if __name__ == "__main__":
    main()
