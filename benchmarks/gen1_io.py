"""Gen1 input: ``.dat`` reads against expelliarmus, frame representations against the authors' NumPy step.

Measured in one run, CPU time (``time.process_time``) medians with one thread:

- a full read of a generated ``*_td.dat`` (``--events``, default 30M: a long Gen1 recording) by
  :func:`snn_det_zoo.data.gen1.read_dat` and by expelliarmus (``Wizard(encoding="dat").read``, the benchmark
  extra ``pip install 'snn-det-zoo[bench]'``); the fields are checked equal. The zoo reads with its compiled
  decoder (``_dat_decode.c``, built by the first read, before the timing) where a C compiler works, else with
  its NumPy path; the script prints which;
- a 50 ms window read of an opened :class:`~snn_det_zoo.data.gen1.DatFile` (what the Gen1 dataset does per
  sample), as a ratio to the full expelliarmus read;
- the last-event frames of SpikeYOLO (T=4) and EMS-YOLO (T=5) over a 250 ms window at sensor resolution
  (:func:`~snn_det_zoo.data.events.last_event_polarity_frames`) against the authors' ``create_data`` step
  (a grey frame per bin, ``img[y, x] = 255 * p`` in time order), bit-identical outputs checked.

    python benchmarks/gen1_io.py                  # 30M events (a 240 MB file in the temp folder)
    python benchmarks/gen1_io.py --events 3000000 # quicker

Rows are written to benchmarks/results/gen1_io-cpu-pt<torch>.csv (atomically).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from _results import write_results

from snn_det_zoo.data.events import bin_edges, last_event_polarity_frames
from snn_det_zoo.data.gen1 import EVENT_DTYPE, DatFile, decoder_unavailable_reason, read_dat, write_dat


def cpu_ms(step: Callable[[], object], repeats: int) -> float:
    """Median CPU time of ``step`` in ms over ``repeats`` runs, after one warm-up run."""
    step()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        step()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def events_of(n: int, duration_us: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.empty(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, duration_us, n))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 304, n), rng.integers(0, 240, n), rng.integers(0, 2, n)
    return ev


def authors_frames(events: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The authors' ``create_data`` step: per bin a grey frame and ``img[y, x] = 255 * p`` in time order."""
    frames = np.full((len(edges) - 1, 240, 304), 127, dtype=np.uint8)
    t = events["t"]
    for k in range(len(edges) - 1):
        ev = events[np.searchsorted(t, edges[k]) : np.searchsorted(t, edges[k + 1])]
        frames[k][ev["y"], ev["x"]] = 255 * ev["p"]
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from expelliarmus import Wizard

    rows = []

    def row(what: str, zoo_ms: float, reference: str, ref_ms: float, equal: bool = True) -> None:
        rows.append({"device": "cpu (1 thread)", "torch": torch.__version__, "what": what,
                     "zoo_cpu_ms": round(zoo_ms, 3), "reference": reference, "reference_cpu_ms": round(ref_ms, 3),
                     "speedup_vs_reference": round(ref_ms / zoo_ms, 3), "outputs_equal": equal if equal else "n/a"})
        print(f"{what:34s} zoo {zoo_ms:9.3f} ms   {reference} {ref_ms:9.3f} ms   x{ref_ms / zoo_ms:.2f}")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench_td.dat"
        duration = max(args.events // 500, 1_000_000)  # at least 1 s: 3M events put 150k in each 50 ms window
        write_dat(path, events_of(args.events, duration))
        wizard = Wizard(encoding="dat")
        theirs, ours = wizard.read(str(path)), read_dat(path)
        why_not = decoder_unavailable_reason()
        print("zoo decoder:", "compiled (_dat_decode.c)" if why_not is None else f"NumPy ({why_not})")
        if not all(np.array_equal(theirs[k], ours[k]) for k in ("t", "x", "y", "p")):
            raise SystemExit("read_dat and expelliarmus disagree")
        full_zoo, full_ref = [], []
        for _ in range(args.repeats):  # interleaved, so that a noisy spell hits both alike
            full_ref.append(cpu_ms(lambda: wizard.read(str(path)), 1))
            full_zoo.append(cpu_ms(lambda: read_dat(path), 1))
        expel_ms = statistics.median(full_ref)
        row(f"full read, {args.events} events", statistics.median(full_zoo), "expelliarmus", expel_ms)
        dat = DatFile(path)
        dat.index_at(0)  # the one order check of an opened file
        starts = itertools.cycle(range(0, duration - 50_000, 7_919))
        window_ms = cpu_ms(lambda: dat.window(s := next(starts), s + 50_000), args.repeats * 20)
        row("50 ms window of an open file", window_ms, "expelliarmus full read", expel_ms, equal=False)

    window = events_of(400_000, 250_000, seed=1)  # 250 ms of a busy scene
    for model, T in (("SpikeYOLO", 4), ("EMS-YOLO", 5)):
        edges = bin_edges(250_000, 250_000, T)
        if not np.array_equal(last_event_polarity_frames(window, edges), authors_frames(window, edges)):
            raise SystemExit(f"{model} frames differ from the authors' step")
        zoo_runs, ref_runs = [], []
        for _ in range(args.repeats * 5):  # interleaved (milliseconds each), so that load hits both alike
            zoo_runs.append(cpu_ms(lambda e=edges: last_event_polarity_frames(window, e), 1))
            ref_runs.append(cpu_ms(lambda e=edges: authors_frames(window, e), 1))
        row(f"{model} last-event frames, T={T}", statistics.median(zoo_runs), "authors' NumPy",
            statistics.median(ref_runs))
    write_results(rows, "gen1_io", "cpu")


if __name__ == "__main__":
    main()
