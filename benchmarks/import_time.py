"""What starting the zoo costs: fresh interpreters importing torch alone, then torch and the zoo (building a model),
and the catalog-only commands (``snn-det-zoo list`` / ``--help``, no torch). CPU-time medians of the child
processes (wall time on a shared machine is noisy), with the zoo's cost beyond ``import torch`` printed as a
difference and a ratio measured in the same run.

    python benchmarks/import_time.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys

from _results import write_results

CASES = {
    "import torch": "import torch",
    "import torch, torchvision": "import torch, torchvision",
    "import torch + snn_det_zoo + create_model": (
        "import torch\nimport snn_det_zoo as zoo\nzoo.create_model('spikeyolo_tiny')"),
    "snn-det-zoo list": "from snn_det_zoo.cli import main\nmain(['list'])",
    "snn-det-zoo --help": "from snn_det_zoo.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
}


def cpu_seconds(code: str) -> float:
    """User + system CPU time of one fresh interpreter running ``code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL,
                   env={"OMP_NUM_THREADS": "1", "PATH": ""})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="fresh interpreters per case")
    args = parser.parse_args()
    medians = {}
    for name, code in CASES.items():
        cpu_seconds(code)  # warm the file cache
        medians[name] = statistics.median(cpu_seconds(code) for _ in range(args.repeat))
    torch_s = medians["import torch"]
    rows = []
    for name, seconds in medians.items():
        beyond = seconds - torch_s
        rows.append({"case": name, "cpu_s_median": f"{seconds:.3f}", "beyond_import_torch_s": f"{beyond:+.3f}",
                     "ratio_to_import_torch": f"{seconds / torch_s:.2f}", "repeat": args.repeat})
        print(f"{name:45s} {seconds:6.2f} s CPU  ({beyond:+.2f} s, {seconds / torch_s:.2f}x import torch)")
    write_results(rows, "import_time", "cpu")


if __name__ == "__main__":
    main()
