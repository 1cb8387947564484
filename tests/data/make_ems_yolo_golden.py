"""Write the golden EMS-YOLO fixtures of tests/test_ems_yolo.py by running the AUTHORS' code (once, by hand).

Usage: python tests/data/make_ems_yolo_golden.py /path/to/EMS-YOLO-checkout

The checkout is a scratch copy of BICLab/EMS-YOLO @ fbfc2ca with two local edits the README itself asks for:
the stride probe of ``models/yolo.py`` line 118 uses ``torch.zeros(1, ch, s, s)`` (README "Supplementary
Note1"), and ``check_version`` is bypassed in ``Detect._make_grid``. Heavy optional imports (cv2, pandas,
plotting) must be importable or stubbed. Nothing of the authors' code is stored here: only the tensors
their model produced (a randomised state_dict, an input, the raw and decoded head outputs).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

T, NC = 2, 2
# config -> (width_multiple, depth_multiple): as small as the config allows (ee blocks need width >= 0.25).
CONFIGS = {"res18-ee": (0.25, 1.0), "resnet34-cat": (0.125, 0.33)}


def main(checkout: str) -> None:
    sys.path.insert(0, checkout)
    import models.common as common  # the authors' modules
    import models.yolo as yolo

    yolo.time_window = common.time_window = T
    out_dir = Path(__file__).resolve().parent
    for name, (width, depth) in CONFIGS.items():
        torch.manual_seed(0)
        cfg = yaml.safe_load(Path(checkout, "models", f"{name}.yaml").read_text())
        cfg.update(width_multiple=width, depth_multiple=depth, nc=NC)
        model = yolo.Model(cfg)
        with torch.no_grad():  # random but well-scaled BN statistics and weights
            for key, value in model.state_dict().items():
                if not value.is_floating_point() or key.endswith("anchors"):
                    continue
                if key.endswith("running_var"):
                    value.uniform_(0.5, 2.0)
                else:
                    value.normal_(0.0, 0.3 if ".bn." in key else 0.1)
                # Stored as float16 to keep the fixture small, so use float16-representable values.
                value.copy_(value.half().float())
        tensors = {f"state.{k}": (v.half() if v.is_floating_point() else v).contiguous()
                   for k, v in model.state_dict().items()}
        images = torch.rand(2, 3, 64, 64)
        tensors["input"] = images
        model.train()
        for level, out in enumerate(model(images.clone())):
            tensors[f"train.{level}"] = out.detach().contiguous()
        model.eval()
        with torch.no_grad():
            decoded, raw = model(images.clone())
        for level, out in enumerate(raw):
            tensors[f"eval.{level}"] = out.contiguous()
        tensors["eval.decoded"] = decoded.contiguous()
        meta = {"config": name, "T": str(T), "width_multiple": str(width), "depth_multiple": str(depth),
                "num_classes": str(NC), "upstream": "BICLab/EMS-YOLO@fbfc2ca", "torch": torch.__version__}
        path = out_dir / f"ems_yolo_golden_{name}.safetensors"
        save_file(tensors, str(path), metadata=meta)
        path.chmod(0o644)


if __name__ == "__main__":
    main(sys.argv[1])
