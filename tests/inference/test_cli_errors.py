"""Which exceptions the CLI turns into one line: cnnarch's own and input OS errors only."""

import pytest

import cnnarch.cli as cli
from cnnarch.errors import CnnarchError, UserError


def _raising(exc):
    def command(args):
        raise exc
    return command


@pytest.mark.parametrize("exc,code", [
    (UserError("bad flag\nsecond line"), 2),
    (CnnarchError("deliberate"), 2),
    (FileNotFoundError(2, "No such file or directory", "nope.pt"), 2),
    (PermissionError(13, "Permission denied", "/root/x"), 2),
])
def test_library_and_input_errors_print_one_line(monkeypatch, capsys, exc, code):
    monkeypatch.setattr(cli, "_cmd_bench", _raising(exc))
    assert cli.main(["bench", "resnet20"]) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("cnnarch bench: error: ")
    assert "Errno" not in err


def test_a_failed_check_exits_1(monkeypatch, capsys):
    from cnnarch.inference.check import ToleranceError

    monkeypatch.setattr(cli, "_cmd_bench", _raising(ToleranceError("disagrees")))
    assert cli.main(["bench", "resnet20"]) == 1
    assert "disagrees" in capsys.readouterr().err


@pytest.mark.parametrize("exc", [ValueError("a bug"), TypeError("a bug"), KeyError("a bug")])
def test_other_exceptions_keep_their_traceback(monkeypatch, exc):
    monkeypatch.setattr(cli, "_cmd_bench", _raising(exc))
    with pytest.raises(type(exc)):
        cli.main(["bench", "resnet20"])


def test_help_lists_every_command_without_building_them(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for command in ("models", "summary", "train", "eval", "reproduce", "experiment", "bench",
                    "export", "predict"):
        assert command in out
