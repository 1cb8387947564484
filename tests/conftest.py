import os

import pytest
import torch

# Two cores on CI; tests are small, so more threads only add contention.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own weights cache; nothing under the user's home is touched."""
    monkeypatch.setenv("SNN_DET_ZOO_HOME", str(tmp_path / "zoo_home"))
    monkeypatch.delenv("SNN_DET_ZOO_ILIF_BACKEND", raising=False)
    yield



def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` need a CUDA device: without one (CI) they are skipped with that reason."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (CI has none)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)
