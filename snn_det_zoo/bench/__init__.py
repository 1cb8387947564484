"""Benchmarks: tracks (a data set and its scoring), the evaluation loop, result rows, and the papers' tables.

``run(name, dataset)`` measures one model on one track and returns its result row; ``evaluate(model,
track)`` is the loop under it. Rows are written by :mod:`.rows`; :mod:`.reproduce` puts the cards' paper
numbers beside this code's.
"""

from .loop import evaluate
from .runner import run
from .tracks import DATASETS, PROTOCOLS, SYNTHETIC_DATASETS, make_track

__all__ = ["DATASETS", "PROTOCOLS", "SYNTHETIC_DATASETS", "evaluate", "make_track", "run"]
