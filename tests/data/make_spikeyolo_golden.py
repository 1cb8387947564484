"""Write the golden SpikeYOLO fixtures of tests/test_spikeyolo_golden.py by running the AUTHORS' code (by hand).

Usage (one variant per process: the COCO and Gen1 code are two different ``ultralytics`` packages)::

    python tests/data/make_spikeyolo_golden.py coco /path/to/SpikeYOLO-checkout
    python tests/data/make_spikeyolo_golden.py gen1 /path/to/SpikeYOLO-checkout

The checkout is an unmodified scratch copy of BICLab/SpikeYOLO @ 309ef5e (``git archive``). The COCO model is
imported from ``<checkout>/ultralytics``, the Gen1 model from ``<checkout>/SpikeYOLO_for_Gen1/ultralytics``;
both need the bundled, modified SpikingJelly 0.0.0.0.12 (``<checkout>/SpikeYOLO_for_Gen1/spikingjelly-0.0.0.0.12``,
put first on ``sys.path`` here; it shadows SpikingJelly 2.0, which this script does not use). Their import chain
also needs timm, einops, torchinfo and psutil: use a scratch venv (``python -m venv --system-site-packages``,
then ``pip install --no-deps timm einops torchinfo psutil``). Their ``DetectionModel.__init__`` calls
``.cuda()`` twice (``ultralytics/nn/tasks.py`` L241, L251); instead of editing the checkout, this script
makes ``Module.cuda``/``Tensor.cuda`` no-ops while it runs, so everything stays on the CPU.

The model is the authors' ``snn_yolov8.yaml`` graph at a custom, tiny scale (width 0.0625, so the fixture stays
small; every block type is still built): COCO uses depth 0.33 with layer 25 as ``MS_ConvBlock [2, 7]`` (the m/l
edit of the yaml), T=1, 3 classes; Gen1 uses the same depth (layers 4 and 6 repeat) with the
stock layer 25 ``[1, 7]``, T=2 (a ``[B, T, C, H, W]`` input), 2 classes, the modified ``MultiStepLIFNode``.
Weights and BatchNorm statistics are randomised (BN statistics first calibrated on random images, then
perturbed) so that most neurons emit every level 0..4; the fire statistics are printed and checked.

Nothing of the authors' code is stored: only tensors their model produced (the randomised state_dict as
float16, the input as float16, the raw head maps of a training-mode forward, the gradient of the first layer
for a loss on those maps, the raw maps of the following eval-mode forward, and the eval-mode decoded output).
The eval forward runs after the training forward, whose BatchNorm momentum updates it therefore sees,
exactly as the test replays it.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import torch
import yaml
from safetensors.torch import save_file

UPSTREAM = "BICLab/SpikeYOLO@309ef5e"
IMG_H, IMG_W, BATCH = 64, 32, 2  # H != W catches a transposed reshape
WIDTH = 0.0625
# variant -> (subdirectory of the checkout, T, classes, depth multiple, layer-25 MLP ratio)
VARIANTS = {"coco": ("", 1, 3, 0.33, 2), "gen1": ("SpikeYOLO_for_Gen1", 2, 2, 0.33, 1)}
LAYER_25 = 25
GRAD_PARAMS = ("model.1.encode_conv.weight", "model.1.encode_bn.weight")


def _import_authors(checkout: Path, variant: str) -> ModuleType:
    root = checkout / VARIANTS[variant][0]
    sys.path[:0] = [str(root), str(checkout / "SpikeYOLO_for_Gen1" / "spikingjelly-0.0.0.0.12")]
    import spikingjelly
    from ultralytics.nn import tasks  # the authors' modules

    if not Path(spikingjelly.__file__).is_relative_to(checkout):
        raise RuntimeError(f"the bundled SpikingJelly was not imported: {spikingjelly.__file__}")
    return tasks


def _config(checkout: Path, variant: str) -> dict:
    subdir, _, num_classes, depth, p5_ratio = VARIANTS[variant]
    cfg = yaml.safe_load((checkout / subdir / "ultralytics/cfg/models/v8/snn_yolov8.yaml").read_text())
    cfg["scales"] = {"golden": [depth, WIDTH, 1024]}
    cfg["scale"], cfg["nc"] = "golden", num_classes
    layers = cfg["backbone"] + cfg["head"]
    assert layers[LAYER_25][2] == "MS_ConvBlock", layers[LAYER_25]
    layers[LAYER_25][3][0] = p5_ratio
    return cfg


def _build(tasks, cfg: dict) -> torch.nn.Module:
    module_cuda, tensor_cuda = torch.nn.Module.cuda, torch.Tensor.cuda
    torch.nn.Module.cuda = lambda self, *a, **k: self  # their build hard-codes .cuda() (see the docstring)
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        return tasks.DetectionModel(cfg, ch=3, nc=cfg["nc"], verbose=False)
    finally:
        torch.nn.Module.cuda, torch.Tensor.cuda = module_cuda, tensor_cuda


def _make_input(T: int) -> torch.Tensor:
    """Random images, float16-representable (the fixture stores them as float16)."""
    shape = (BATCH, 3, IMG_H, IMG_W) if T == 1 else (BATCH, T, 3, IMG_H, IMG_W)  # Gen1: [B, T, C, H, W]
    return torch.rand(shape).half().float()


@torch.no_grad()
def _randomise(model: torch.nn.Module, T: int) -> None:
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:  # affine parameters that put most pre-neuron values inside the firing range [0.5, 4]
        bn.weight.uniform_(0.6, 1.4)
        bn.bias.normal_(0.6, 0.5)
    for name, p in model.named_parameters():
        if name.endswith("conv.bias"):
            p.normal_(0.0, 0.5)
    # Calibrate running statistics (cumulative average over a few random batches), then perturb them so
    # eval mode differs from the batch statistics of training mode.
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for _ in range(2):
        model(_make_input(T))
    for bn in bns:
        bn.momentum = 0.03
        bn.running_mean.add_(torch.randn_like(bn.running_mean) * 0.2 * bn.running_var.sqrt())
        bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.7, 1.4))
    for value in model.state_dict().values():
        if value.is_floating_point():  # stored as float16: use float16-representable values
            value.copy_(value.half().float())


def _is_neuron(module: torch.nn.Module) -> bool:
    return type(module).__name__ in ("mem_update", "MultiStepLIFNode")


def _fire_statistics(model: torch.nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per neuron: the fraction of outputs at each level 0..4 in one eval forward."""
    stats: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if _is_neuron(module):
            def hook(_m, _inp, out, name=name):
                stats[name] = torch.stack([(out == level).float().mean() for level in range(5)])
            hooks.append(module.register_forward_hook(hook))
    model.eval()
    with torch.no_grad():
        model(images.clone())
    for h in hooks:
        h.remove()
    return stats


def _check_firing(stats: dict[str, torch.Tensor]) -> None:
    silent = [n for n, s in stats.items() if s[0] > 0.98]
    saturated = [n for n, s in stats.items() if s[4] > 0.9]
    levels = torch.stack(list(stats.values())).mean(0)
    print(f"{len(stats)} neurons ran; mean level distribution {[round(v, 3) for v in levels.tolist()]}; "
          f"silent {silent}; saturated {saturated}")
    if silent or saturated or (levels == 0).any():
        raise RuntimeError("randomised weights give trivial spikes; adjust _randomise")


def main(variant: str, checkout: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    checkout_path = Path(checkout).resolve()
    tasks = _import_authors(checkout_path, variant)
    _, T, num_classes, depth, p5_ratio = VARIANTS[variant]
    torch.manual_seed(0)
    model = _build(tasks, _config(checkout_path, variant))
    _randomise(model, T)
    images = _make_input(T)
    _check_firing(_fire_statistics(model, images))

    # Cloned now: the training forward below updates the BatchNorm running statistics in place.
    tensors = {f"state.{k}": (v.half() if v.is_floating_point() else v.clone()).contiguous()
               for k, v in model.state_dict().items()}
    tensors["input"] = images.half()
    model.train()
    maps = model(images.clone())
    for level, out in enumerate(maps):
        tensors[f"train.{level}"] = out.detach().contiguous()
    # Gradients of the first (analog) layer flow back through every neuron's straight-through estimator
    # and (T=2) through the detached reset: a small tensor that checks the whole backward pass.
    sum(m.square().mean() for m in maps).backward()
    for name in GRAD_PARAMS:
        tensors[f"grad.{name}"] = model.get_parameter(name).grad.contiguous()
    model.eval()
    with torch.no_grad():
        decoded, raw = model(images.clone())
    for level, out in enumerate(raw):
        tensors[f"eval.{level}"] = out.contiguous()
    tensors["eval.decoded"] = decoded.contiguous()
    counts = defaultdict(int)
    for module in model.modules():
        counts[type(module).__name__] += 1
    meta = {"variant": variant, "T": str(T), "num_classes": str(num_classes), "img_size": f"{IMG_H}x{IMG_W}",
            "width_multiple": str(WIDTH), "depth_multiple": str(depth), "layer25_mlp_ratio": str(p5_ratio),
            "input_layout": "BTCHW" if T > 1 else "BCHW", "upstream": UPSTREAM, "torch": torch.__version__,
            "num_params": str(sum(p.numel() for p in model.parameters())),
            "num_neurons": str(sum(1 for m in model.modules() if _is_neuron(m))),
            "modules": ",".join(f"{k}:{v}" for k, v in sorted(counts.items()))}
    path = Path(__file__).resolve().parent / f"spikeyolo_golden_{variant}.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.chmod(0o644)
    tmp.replace(path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {meta['num_params']} parameters)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
