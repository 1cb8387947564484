"""The README's set-up commands are the ones CI runs, and the commands it names exist."""

import re
from pathlib import Path

import pytest

from snn_det_zoo.cli import _build_parser

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_both_in_a_fresh_venv():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    assert len(blocks) == 2, "the README should show one main-job command and one test command"
    main_job, tests = blocks
    assert "pip install" in main_job and "snn-det-zoo" in main_job
    assert "pip install" in tests and "pytest" in tests
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith("#")]
    # The README's commands, verbatim and in order, are the last two lines CI runs ...
    assert ci_lines[-2:] == [main_job, tests]
    # ... inside a virtual environment made fresh in a temporary folder and activated before them.
    setup = ci_lines[:-2]
    make = next(i for i, line in enumerate(setup) if "-m venv" in line)
    assert "mktemp -d" in " ".join(setup[:make + 1])
    assert any(line.startswith("source ") and "bin/activate" in line for line in setup[make + 1:])


def test_cli_commands_named_in_the_readme_exist():
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(r"^snn-det-zoo ([a-z-]+)", text, flags=re.M))
    subparsers = next(a for a in _build_parser()._actions if a.dest == "command")
    assert named and named <= set(subparsers.choices)


@pytest.mark.slow
def test_the_python_example_runs(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    import snn_det_zoo as zoo

    code = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)[0]
    monkeypatch.chdir(tmp_path)  # the example loads "best.safetensors" from the working folder
    save_file(zoo.create_model("spikeyolo_n").state_dict(), "best.safetensors")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert len(namespace["dets"]) == 2 and namespace["mine"].num_classes == 80
    assert namespace["tiny"].weights_tag == "shapes" and namespace["tiny"].class_names[0]


def test_the_committed_leaderboard_and_the_readme_excerpt_are_what_the_command_renders(tmp_path):
    """`snn-det-zoo leaderboard --results benchmarks/results --out benchmarks` made benchmarks/LEADERBOARD.md and
    the README's excerpt: rendering the committed rows again gives the same text."""
    from snn_det_zoo.leaderboard import Leaderboard, load_rows

    board = Leaderboard.from_rows(load_rows(ROOT / "benchmarks" / "results"))
    plots = [name for name in ("leaderboard.png", "leaderboard_T.png") if (ROOT / "benchmarks" / name).is_file()]
    rendered = board.markdown(plots) + "\n"
    assert (ROOT / "benchmarks" / "LEADERBOARD.md").read_text() == rendered
    readme = (ROOT / "README.md").read_text()
    after = readme.split("Excerpt (synthetic-shapes, protocol `coco`):\n\n", 1)[1].splitlines()
    table = after[: next(i for i, line in enumerate(after) if not line.startswith("|"))]
    assert len(table) >= 3 and "\n".join(table) in rendered
    assert "](benchmarks/leaderboard.png)" in readme and "leaderboard.png" in plots
