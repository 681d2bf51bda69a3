"""Fixtures of the reliability suite; the code lives in _helpers.py (loaded by path, so the
test modules can share it under pytest's importlib import mode)."""

import importlib.util
import sys
from pathlib import Path


def load_helpers():
    name = "cnnarch_reliability_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_helpers.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_h = load_helpers()
cli = _h.cli
user_error = _h.user_error
evil_pickle = _h.evil_pickle
tiny_run = _h.tiny_run
copy_run = _h.copy_run
run_driver = _h.run_driver
check_run = _h.check_run
same_run = _h.same_run
reliability_log = _h.reliability_log
pytest_terminal_summary = _h.pytest_terminal_summary
_one_thread = _h._one_thread
