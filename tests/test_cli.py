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
