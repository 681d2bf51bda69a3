"""`cnnarch reproduce` / `cnnarch experiment`: argument handling (the runs are tested elsewhere)."""

import pytest

from cnnarch.cli import build_parser, main


def test_reproduce_arguments():
    args = build_parser().parse_args(["reproduce", "--scale", "full", "--data", "cifar10",
                                      "--out", "x", "--seed", "3"])
    assert (args.scale, args.data, args.out, args.seed) == ("full", "cifar10", "x", 3)
    assert build_parser().parse_args(["reproduce"]).scale == "quick"


@pytest.mark.parametrize("argv", [["experiment", "nope"], ["reproduce", "--scale", "huge"]])
def test_bad_choices_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_unknown_dataset_is_a_one_line_error(tmp_path, capsys):
    assert main(["experiment", "aux-heads", "--data", "nosuchdata", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cnnarch experiment: error:") and "nosuchdata" in err[-1]
