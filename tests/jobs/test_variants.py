"""Strategy variants: the JSON the main job and the accuracy benchmark read, and the runs they make."""

import argparse
import json

import pytest


def test_variants_load_from_text_or_a_file_and_keep_their_order(tmp_path):
    from omnifm_monai.jobs.variants import Variant, load_variants, strategy_runs

    spec = {"fedbn + recalibrated norms": ["fedbn", "--strategy-options", '{"recalibrate_norms":true}'], "b": ["local"]}
    path = tmp_path / "variants.json"
    path.write_text(json.dumps(spec))
    assert load_variants(str(path)) == load_variants(json.dumps(spec)) == spec
    runs = strategy_runs(["omnifm", "fedavg"], load_variants(str(path)))
    assert [run.label for run in runs] == ["omnifm", "fedavg", "fedbn + recalibrated norms", "b"]
    recalibrated = ("--strategy-options", '{"recalibrate_norms":true}')
    assert runs[2] == Variant("fedbn + recalibrated norms", "fedbn", recalibrated)
    assert runs[2].folder == "fedbn___recalibrated_norms" and runs[0].folder == "omnifm"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "--variants: not JSON"),
        ('["fedbn"]', "--variants: expected {label: [strategy, options...]}, got ['fedbn']"),
        ('{"no strategy": []}', "variant 'no strategy': expected [strategy, job options...], got []"),
        ('{"a number": ["fedbn", 3]}', "variant 'a number': expected [strategy, job options...]"),
    ],
)
def test_a_malformed_variant_is_refused_in_one_line_that_says_what_was_expected(text, expected):
    from omnifm_monai.jobs.variants import load_variants

    with pytest.raises(argparse.ArgumentTypeError) as error:
        load_variants(text)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)


def test_a_malformed_variants_file_is_named(tmp_path):
    from omnifm_monai.jobs.variants import load_variants

    path = tmp_path / "mine.json"
    path.write_text("{oops")
    with pytest.raises(argparse.ArgumentTypeError, match=f"--variants file {path}: not JSON"):
        load_variants(str(path))


def test_two_runs_that_would_share_a_folder_are_refused_before_any_runs():
    from omnifm_monai.jobs.variants import strategy_runs

    with pytest.raises(ValueError, match=r"share the folder\(s\) \['fedbn_recal'\]"):
        strategy_runs(["fedbn"], {"fedbn recal": ["fedbn"], "fedbn+recal": ["fedbn"]})
    with pytest.raises(ValueError, match=r"\['omnifm'\]"):
        strategy_runs(["omnifm"], {"omnifm": ["omnifm", "--rounds", "2"]})
