"""The benchmark scripts that have no other test run end to end on tiny settings and write their rows."""

import csv
import os
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmarks_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    # The scripts pin OMP_NUM_THREADS at import; keep that out of the rest of the session's subprocesses.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))


def test_eval_pipeline_times_the_loader_the_model_and_the_scoring(benchmarks_on_path, tmp_path):
    import eval_pipeline

    out = tmp_path / "rows.csv"
    assert eval_pipeline.main(["spikeyolo_tiny", "--images", "3", "--batch", "2", "--workers", "0", "1",
                               "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["workers"] for r in rows] == ["0", "1"]
    for row in rows:
        assert float(row["model_s"]) > 0 and float(row["loader_wait_s"]) > 0
        assert float(row["score_faster_s"]) > 0 and float(row["score_pycocotools_s"]) > 0
        ratio = float(row["loader_wait_s"]) / float(row["model_s"])
        assert float(row["loader_wait_per_model_s"]) == pytest.approx(ratio, rel=0.1, abs=2e-3)  # of rounded times
