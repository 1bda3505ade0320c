"""The accuracy benchmark's pooled reference and its summary (the simulations themselves are run by the script)."""

import json
import math

import numpy as np
import pytest

BENCHMARK = "federated_accuracy"  # the script under test (conftest.py loads it as `script`)


def _run(label, seed, restricted, unrestricted, participation=0.2):
    metrics = {"restricted_accuracy": restricted, "accuracy": unrestricted, "restricted_macro_f1": restricted,
               "macro_f1": unrestricted, "last5_restricted_accuracy": restricted, "majority_rate": 0.5}  # fmt: skip
    return {"participation": participation, "seed": seed, "label": label, "problems": [], **metrics}


def test_mean_spread_and_goals(script):
    # Prepare: two seeds; OmniFM 3 points above FedPer, 1 below pooled, 25 above FedAvg on all labels
    runs = [
        *(_run("fedper", s, 0.70 + d, 0.50) for s, d in ((0, -0.01), (1, 0.01))),
        *(_run("fedavg", s, 0.60, 0.30) for s in (0, 1)),
        *(_run("omnifm", s, 0.73 + d, 0.55) for s, d in ((0, -0.02), (1, 0.02))),
        *(_run(script.CENTRALISED, s, 0.74, 0.74) for s in (0, 1)),
        *(_run("fedavg + recalibrated norms", s, 0.72, 0.70) for s in (0, 1)),
        *(_run("omnifm w/o PSP suffix", s, 0.90, 0.90) for s in (0, 1)),  # an ablation is no baseline
    ]
    report = {"runs": runs, "machine": {"date": "today"},
              "settings": {"clients": 10, "rounds": 2, "local_epochs": 1, "image_size": 32, "seeds": [0, 1],
                           "forwarded": []}}  # fmt: skip
    # Execute
    rows = {r["label"]: r for r in script.table_rows(report)}
    markdown = script.to_markdown(report)
    # Assert
    assert rows["omnifm"]["restricted_accuracy"]["mean"] == pytest.approx(0.73)
    assert rows["omnifm"]["restricted_accuracy"]["std"] == pytest.approx(math.sqrt(2 * 0.02**2))
    assert "| 0.2 | omnifm | 73.0 ± 2.8 | 55.0 ± 0.0 |" in markdown
    assert "(fedper): +3.0 points (goal >= +2): met" in markdown
    assert "pooled centralised: -1.0 points (goal >= -2): met" in markdown
    assert "FedAvg, all labels: +25.0 points (goal >= +20): met" in markdown
    assert "best baseline variant (fedavg + recalibrated norms): +1.0 points (goal >= +2): NOT met" in markdown


def test_pooled_centralised_scores_every_site(script, tmp_path):
    job_args = ["--clients", "3", "--rounds", "1", "--local-epochs", "1", "--image-size", "32",
                "--samples-per-client", "30", "--bundle-overrides", '{"batch_size":16}']  # fmt: skip
    per_site = script.pooled_centralised(job_args, str(tmp_path))
    assert sorted(per_site) == ["site-1", "site-2", "site-3"]
    for metrics in per_site.values():
        assert 0 <= metrics["restricted_accuracy"] <= 1 and metrics["restricted_accuracy"] >= metrics["accuracy"]
    assert (tmp_path / "pooled.npz").is_file()
    (tmp_path / "pooled.npz").unlink()
    assert script.pooled_centralised(job_args, str(tmp_path)) == per_site  # a restart reuses the finished reference
    assert not (tmp_path / "pooled.npz").exists()


def test_a_restarted_benchmark_keeps_finished_runs(script, tmp_path):
    server = tmp_path / "omnifm" / "state" / "server"
    server.mkdir(parents=True)
    (server / "server_state.json").write_text('{"strategy": "omnifm", "history": []}')
    assert script.finished_run(str(tmp_path), "omnifm")[0] is None  # unfinished: no final metrics
    (server / "final_metrics.json").write_text('{"metrics": {"site-1": {"restricted_accuracy": 0.5}}}')
    result, problems = script.finished_run(str(tmp_path), "omnifm")
    assert result.final_mean("restricted_accuracy") == 0.5 and problems == []
    script.record_run(str(tmp_path), "omnifm", ["--rounds", "5"], 12.5)
    assert script.finished_run(str(tmp_path), "omnifm", ["--rounds", "5"])[0].wall_seconds == 12.5
    assert script.finished_run(str(tmp_path), "omnifm", ["--rounds", "6"])[0] is None  # other options: run again
    # a strategy whose defaults changed since the run (e.g. omnifm's spectral path) runs again
    spectral, default = script.strategy_fields("omnifm", {"spectral": True}), script.strategy_fields("omnifm", {})
    assert "spectral=False" in default and default != spectral
    script.record_run(str(tmp_path), "omnifm", ["--rounds", "5"], 12.5, spectral)
    assert script.finished_run(str(tmp_path), "omnifm", ["--rounds", "5"], spectral)[0].wall_seconds == 12.5
    assert script.finished_run(str(tmp_path), "omnifm", ["--rounds", "5"], default)[0] is None


def test_every_sweep_and_ablation_changes_the_setting_it_names(script):
    from omnifm_monai.jobs import build_network
    from omnifm_monai.jobs import parse_job_args as parse_args

    settings = {label: parse_args(["--strategy", "omnifm", *extra])[0] for label, extra in script.SWEEPS.items()}
    assert settings["omnifm + ECA+GSKR lambda=1"].bundle_overrides == {"spalign_weight": 1.0}
    assert settings["omnifm + ECA+GSKR k=2"].server_options == {"retrieval_k": 2}
    assert settings["omnifm + ECA+GSKR 8 prototypes per site"].server_options == {"prototypes_per_site": 8}
    assert all(s.strategy_options == {"spectral": True} for s in settings.values())  # the settings of that path
    network, _ = build_network(settings["omnifm + ECA+GSKR cutoff=0.3"], num_classes=6)
    assert network.cutoff == 0.3  # a nested bundle id reaches the network definition
    ablations = {label: parse_args(["--strategy", "omnifm", *extra])[0] for label, extra in script.ABLATIONS.items()}
    assert ablations["omnifm + ECA w/o GSKR"].strategy_options == {"spectral": True}
    assert ablations["omnifm + ECA w/o GSKR"].server_options == {"prototypes_per_site": 0}
    assert ablations["omnifm w/o PSP suffix"].strategy_options == {"prompt": False}


def test_labelled_variants_from_the_command_line(script, tmp_path):
    variant = ["omnifm", "--strategy-options", '{"recalibrate_norms":true}']
    args, forwarded = script.parse_args(
        ["--variants", json.dumps({"omnifm + recalibrated norms": variant}), "--federation-data", "x"]
    )
    assert args.variants == {"omnifm + recalibrated norms": variant}
    assert forwarded == ["--federation-data", "x"]
    with pytest.raises(SystemExit):  # argparse reports the bad variant and exits
        script.parse_args(["--variants", '{"no strategy": []}'])


def test_the_committed_variant_files_name_real_strategies_and_options(script):
    from omnifm_monai.jobs import parse_job_args as parse_args
    from omnifm_monai.strategies import get_strategy

    files = sorted(script.Path(script.__file__).parent.joinpath("variants").glob("*.json"))
    assert files
    for path in files:
        for strategy, *extra in script.load_variants(str(path)).values():
            settings, _ = parse_args(["--strategy", strategy, *extra])
            get_strategy(settings.strategy, **settings.strategy_options)  # a typo in a field fails here


def test_paired_difference_by_hand(script):
    # Prepare: differences 0.02, 0.04, 0.06 -> mean 0.04, sd 0.02, t(0.975, 2) = 4.302653
    # Execute
    stat = script.paired_difference([0.72, 0.74, 0.76], [0.70, 0.70, 0.70])
    # Assert
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert stat["mean"] == pytest.approx(0.04) and stat["sd"] == pytest.approx(0.02) and stat["n"] == 3
    assert (stat["low"], stat["high"]) == (pytest.approx(0.04 - half, abs=1e-6), pytest.approx(0.04 + half, abs=1e-6))
    one = script.paired_difference([0.7, float("nan")], [0.6, 0.6])  # a failed run drops its pair
    assert one["n"] == 1 and one["mean"] == pytest.approx(0.1) and math.isnan(one["low"])
    with pytest.raises(ValueError, match="differ in length"):
        script.paired_difference([0.1], [0.1, 0.2])


def test_paired_rows_against_references_and_omnifm(script):
    # Prepare: three seeds; fedavg 1, 2, 3 points above local-to-convergence; omnifm constant 0.80
    local, pooled = script.LOCAL_CONVERGED, script.POOLED_CONVERGED
    runs = [
        *(_run("fedavg", s, 0.70 + 0.01 * (s + 1), 0.5) for s in range(3)),
        *(_run("omnifm", s, 0.80, 0.5) for s in range(3)),
        *(_run(local, s, 0.70, 0.7) for s in range(3)),
        *(_run(pooled, s, 0.75, 0.75) for s in range(2)),  # one seed missing: 2 pairs
    ]
    report = {"runs": runs, "machine": {"date": "today"},
              "settings": {"clients": 3, "rounds": 2, "local_epochs": 1, "image_size": 32, "seeds": [0, 1, 2],
                           "forwarded": []}}  # fmt: skip
    # Execute
    report["paired"] = script.paired_rows(report)
    rows = {(r["label"], r["versus"]): r for r in report["paired"]}
    markdown = script.to_markdown(report)
    # Assert: the references are never the left-hand side; fedavg - local = +2.0, sd 1.0, t(2) interval
    assert set(rows) == {("fedavg", local), ("fedavg", pooled), ("fedavg", "omnifm"), ("omnifm", local),
                         ("omnifm", pooled)}  # fmt: skip
    assert rows[("fedavg", local)]["mean"] == pytest.approx(0.02)
    assert rows[("fedavg", pooled)]["n"] == 2
    assert "| 0.2 | fedavg | local (to convergence) | +2.0 | [-0.5, +4.5] | 3 | no |" in markdown
    assert "| 0.2 | omnifm | local (to convergence) | +10.0 |" in markdown  # sd 0: a zero-width interval
    assert "OmniFM vs local (to convergence): +10.0 points (goal >= +3): met" in markdown


def test_converged_references_train_once_and_restart(script, tmp_path):
    job_args = ["--clients", "2", "--scenario", "cross_modality_shared", "--site-sizes", "20,10", "--image-size", "32",
                "--bundle-overrides", '{"batch_size":8}']  # fmt: skip
    refs = script.converged_references(job_args, str(tmp_path), max_epochs=3, patience=1)
    assert sorted(refs) == sorted([script.LOCAL_CONVERGED, script.POOLED_CONVERGED])
    for per_site in refs.values():
        assert sorted(per_site) == ["site-1", "site-2"]
        # site-2: 10 images -> 2 test images, so its accuracy is 0, 0.5 or 1
        assert per_site["site-2"]["restricted_accuracy"] in (0.0, 0.5, 1.0)
        # each site's validation split is scored too (what settings are chosen on), as a federated site's is
        assert all(0.0 <= m["val_restricted_accuracy"] <= 1.0 for m in per_site.values())
    assert script.converged_references(job_args, str(tmp_path), max_epochs=3, patience=1) == refs  # cached
    local = refs[script.LOCAL_CONVERGED]
    record = script._reference_record(1.0, 0, script.LOCAL_CONVERGED, local, ("restricted_accuracy",))
    assert record["val_restricted_accuracy"] == np.mean([m["val_restricted_accuracy"] for m in local.values()])


def test_a_dense_task_reports_its_own_metrics_and_units(script):
    # Prepare: super-resolution, PSNR in dB (not %): omnifm 0.3 and 0.5 dB above fedavg over two seeds
    assert script.task_metrics("super_resolution") == ("psnr", ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim"))
    metrics = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")

    def run(label, seed, psnr):
        values = {"psnr": psnr, "ssim": 0.8, "bicubic_psnr": 28.0, "bicubic_ssim": 0.7, "last5_psnr": psnr}
        return {"participation": 1.0, "seed": seed, "label": label, "problems": [], **values}

    runs = [run("fedavg", 0, 29.0), run("fedavg", 1, 29.5), run("omnifm", 0, 29.3), run("omnifm", 1, 30.0)]
    report = {"runs": runs, "machine": {"date": "today"}, "headline": "psnr", "metrics": metrics,
              "settings": {"clients": 4, "rounds": 2, "local_epochs": 1, "image_size": 64, "seeds": [0, 1],
                           "forwarded": ["--task", "super_resolution"]}}  # fmt: skip
    # Execute
    report["paired"] = script.paired_rows(report)
    markdown = script.to_markdown(report)
    # Assert: dB shown as they are, SSIM in %, no majority-rate column, the paired difference in dB
    assert "| participation | strategy | PSNR dB | SSIM | bicubic PSNR dB | bicubic SSIM | last-5 PSNR dB |" in markdown
    assert "| 1.0 | omnifm | 29.65 ± 0.49 | 80.0 ± 0.0 | 28.00 ± 0.00 | 70.0 ± 0.0 | 29.65 ± 0.49 | 0 |" in markdown
    assert "| 1.0 | fedavg | omnifm | -0.4 |" in markdown
    assert "OmniFM vs the best other strategy (fedavg): +0.4 dB (goal >= +2): NOT met" in markdown
