"""One-line errors a site can act on: the root cause of a config-engine failure, printed by the bundle hook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omnifm_monai.data.classification import load_classification_split
from omnifm_monai.errors import SiteDataError, install_bundle_error_hook, one_line_reason, root_cause

REPO = Path(__file__).resolve().parents[1]


def _wrapped(error: Exception) -> RuntimeError:
    """``error`` wrapped the way MONAI's config engine wraps what an expression raises."""
    try:
        try:
            raise error
        except Exception as e:
            raise RuntimeError("Failed to evaluate ConfigExpression: $load(...)") from e
    except RuntimeError as outer:
        return outer


def _data_error(tmp_path) -> RuntimeError:
    try:
        load_classification_split(tmp_path / "missing", "train")
    except FileNotFoundError as e:
        return _wrapped(e)
    raise AssertionError("expected a FileNotFoundError")


def test_root_cause_and_reason_skip_monai_wrappers(tmp_path):
    outer = _data_error(tmp_path)
    assert isinstance(root_cause(outer), FileNotFoundError)
    assert one_line_reason(outer) == f"FileNotFoundError: dataset_dir '{tmp_path / 'missing'}' does not exist."
    site = _wrapped(SiteDataError("'a.nii' cannot be read by NibabelReader: empty"))
    assert one_line_reason(site) == "'a.nii' cannot be read by NibabelReader: empty"


def test_hook_prints_one_line_for_data_errors_and_full_tracebacks_otherwise(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    assert install_bundle_error_hook() is False  # pytest is not `python -m monai.bundle`
    assert install_bundle_error_hook(force=True) is True
    outer = _data_error(tmp_path)
    sys.excepthook(type(outer), outer, outer.__traceback__)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"ERROR: dataset_dir '{tmp_path / 'missing'}' does not exist." and len(err) == 2

    bug = _wrapped(ZeroDivisionError("division by zero"))  # not a user-input error: full traceback
    sys.excepthook(type(bug), bug, bug.__traceback__)
    assert "Traceback" in capsys.readouterr().err

    monkeypatch.setenv("OMNIFM_TRACEBACK", "1")
    sys.excepthook(type(outer), outer, outer.__traceback__)
    assert "Traceback" in capsys.readouterr().err


def test_monai_bundle_run_on_a_missing_folder_ends_with_one_line(tmp_path):
    bundle = REPO / "bundles" / "omnifm_classification"
    command = [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "train.json"),
        "--bundle_root", str(bundle), "--dataset_dir", str(tmp_path / "missing"),
        "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "eval"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "Failed to evaluate" not in done.stderr
    assert f"ERROR: dataset_dir '{tmp_path / 'missing'}' does not exist." in done.stderr.splitlines()
