"""The command line: the zoo's own errors as one line, anything else (a bug) with its traceback."""

import pytest

from snn_det_zoo import cli
from snn_det_zoo.errors import InvalidArgumentError


def test_zoo_errors_print_one_line_and_exit_2(capsys):
    assert cli.main(["info", "no_such_model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("snn-det-zoo info: error: unknown model 'no_such_model'")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_bug_is_not_shown_as_a_user_error(monkeypatch):
    def broken(args):
        raise KeyError("a bug in the command")

    real = cli._build_parser

    def parser_with_a_broken_list():
        parser = real()
        sub = next(a for a in parser._actions if a.dest == "command")
        sub.choices["list"].set_defaults(func=broken)
        return parser

    monkeypatch.setattr(cli, "_build_parser", parser_with_a_broken_list)
    with pytest.raises(KeyError, match="a bug in the command"):
        cli.main(["list"])


def test_bench_checks_its_arguments_before_evaluating(tmp_path, monkeypatch, capsys):
    import snn_det_zoo.bench.runner as bench_run

    def must_not_run(*args, **kwargs):
        raise AssertionError("evaluate ran although an argument was bad")

    monkeypatch.setattr(bench_run, "evaluate", must_not_run)
    foreign = tmp_path / "r" / "results-synthetic-shapes-coco.csv"
    foreign.parent.mkdir()
    foreign.write_text("model,top1\nresnet,80\n")
    base = ["bench", "spikeyolo_n", "--num-samples", "2", "--image-size", "64", "--quiet", "--device", "cpu"]
    (tmp_path / "file.txt").write_text("a file, not a folder")
    cases = {  # expected words of the message -> the arguments
        "header": [*base, "--results", str(tmp_path / "r")],  # a results file of another version
        "split must be one of": [*base, "--split", "a\nb", "--no-save"],
        "integer": [*base, "--model-arg", "T=1.5", "--no-save"],
        "limit must be a positive integer": [*base, "--limit", "0", "--no-save"],
        "cannot create the folder": [*base, "--results", str(tmp_path / "file.txt" / "sub")],
    }
    for expected, argv in cases.items():
        assert cli.main(argv) == 2, expected
        assert expected in capsys.readouterr().err, expected
    assert foreign.read_text() == "model,top1\nresnet,80\n"


def test_invalid_argument_error_is_a_value_error():
    assert issubclass(InvalidArgumentError, ValueError)


def _imported_after(code: str) -> set[str]:
    import subprocess
    import sys

    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_help_list_and_info_import_no_torch_and_models_no_torchvision():
    """The commands that only read the catalog answer without torch; building a model needs torch but not
    torchvision (which loads torch._dynamo): NMS and the box helpers import it when they run."""
    light = _imported_after("from snn_det_zoo.cli import main\nmain(['list', '--json'])\nmain(['info', 'spikeyolo_n'])")
    assert "torch" not in light and "snn_det_zoo.registry" in light
    built = _imported_after("import snn_det_zoo as zoo\nzoo.create_model('spikeyolo_tiny')")
    assert "torch" in built and "spikingjelly" in built and "torchvision" not in built


def test_list_is_a_table_with_where_each_weights_tag_is(capsys, tmp_path):
    import json

    assert cli.main(["list", "*tiny", "--json"]) == 0
    records = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    tiny = records["spikeyolo_tiny"]
    assert (tiny["family"], tiny["params_m"], tiny["T"], tiny["D"], tiny["modality"]) == ("spikeyolo", 1.75, 1, 4,
                                                                                          "image")
    assert tiny["weights"] == {"shapes": "built-in", "shapes_events": "built-in"}
    assert cli.main(["list", "--pretrained", "spikeyolo_tiny.shapes_events", "--json"]) == 0
    (events,) = json.loads(capsys.readouterr().out)
    assert (events["T"], events["modality"]) == (2, "events")  # what the weights were trained with
    assert cli.main(["list", "spikeyolo_s"]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split() == ["name", "family", "params", "(M)", "T", "D", "input", "weights"]
    assert line.split() == ["spikeyolo_s", "spikeyolo", "23.15", "1", "4", "image", "coco_official", "(downloadable)"]
    assert cli.main(["list", "nothing*"]) == 0
    assert "no model matches 'nothing*' (snn-det-zoo list shows them all)" in capsys.readouterr().out


def test_weights_status_follows_the_cache():
    import json

    from snn_det_zoo.registry import weights_dir, weights_status

    assert weights_status("spikeyolo_s", "coco_official") == "downloadable"
    folder = weights_dir("spikeyolo_s", "coco_official")
    folder.mkdir(parents=True)
    (folder / "card.json").write_text('{"file": "model-0123456789abcdef.safetensors"}')
    assert weights_status("spikeyolo_s", "coco_official") == "downloadable"  # the card names a missing file
    (folder / "model-0123456789abcdef.safetensors").write_bytes(b"x")
    assert weights_status("spikeyolo_s", "coco_official") == "cached"
    (folder / "junk.bin").write_bytes(b"x")
    for name in ("junk.bin", "../../../../../../etc/hostname"):  # only the cache's own file names count
        (folder / "card.json").write_text(json.dumps({"file": name}))
        assert weights_status("spikeyolo_s", "coco_official") == "downloadable", name
    (folder / "card.json").write_text("not json")
    assert weights_status("spikeyolo_s", "coco_official") == "downloadable"  # a broken cache is not a cache
    assert weights_status("spikeyolo_n", "anything") == "manual"


def test_cli_errors_speak_the_command_line(capsys):
    assert cli.main(["bench", "spikeyolo_n", "--pretrained", "--no-save"]) == 2
    err = capsys.readouterr().err
    assert "give --weights FILE, or a model with weights (snn-det-zoo list --pretrained)" in err
    assert "pretrained=True" not in err
    assert cli.main(["bench", "spikeyolo_tiny", "--pretrained", "--weights", "w.safetensors", "--no-save"]) == 2
    assert "--pretrained loads the card's weights and --weights FILE your own" in capsys.readouterr().err


def test_bench_coco_backend_choices_are_the_scorers():
    from snn_det_zoo.eval.coco import BACKENDS

    bench = next(a for a in cli._build_parser()._actions if a.dest == "command").choices["bench"]
    option = next(a for a in bench._actions if a.dest == "coco_backend")
    assert tuple(option.choices) == ("auto", *BACKENDS) and option.default == "auto"


def test_bench_passes_precision_fuse_and_compile_to_the_harness(monkeypatch):
    import snn_det_zoo.bench.runner as runner

    seen = {}

    def fake_run(name, dataset, **kwargs):
        seen.update(kwargs, name=name)
        return None

    monkeypatch.setattr(runner, "run", fake_run)
    argv = ["bench", "spikeyolo_tiny.shapes", "--pretrained", "--precision", "bf16", "--fuse", "--compile",
            "--coco-backend", "pycocotools", "--no-save", "--device", "cpu"]
    assert cli.main(argv) == 0
    assert (seen["name"], seen["precision"], seen["fuse"], seen["compile"], seen["coco_backend"]) == (
        "spikeyolo_tiny.shapes", "bf16", True, True, "pycocotools")
