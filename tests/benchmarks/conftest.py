"""Load a benchmark script (``benchmarks/<name>.py`` is a script, not a package) as a module."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the scripts import their shared helpers as `_common`, found beside them when run as `python benchmarks/x.py`
sys.modules.setdefault("_common", load_benchmark("_common"))


@pytest.fixture(scope="module")
def script(request):
    """The script named by the test module's ``BENCHMARK``."""
    return load_benchmark(request.module.BENCHMARK)
