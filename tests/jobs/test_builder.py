"""The job builder: exported NVFlare job folders, without running them."""

import json
import os

import pytest
import torch

from omnifm_monai.jobs import CLIENT_SCRIPT, JobSettings, build_job, client_args

SPECTRAL = {"spectral": True}  # OmniFM's spectral path, off in the default omnifm


def _export(tmp_path, **overrides):
    settings = JobSettings(
        num_clients=2, num_rounds=1, image_size=32, samples_per_client=30, state_root=str(tmp_path / "state")
    )
    for key, value in overrides.items():
        setattr(settings, key, value)
    job, federation = build_job(settings)
    job.export_job(str(tmp_path / "jobs"))
    return settings, tmp_path / "jobs" / settings.name, federation


def _configs(job_dir):
    server = json.loads((job_dir / "app_server" / "config" / "config_fed_server.json").read_text())
    client = json.loads((job_dir / "app_site-1" / "config" / "config_fed_client.json").read_text())
    return server, client


def test_fedbn_job_declares_norm_layers_private(tmp_path):
    # Execute
    settings, job_dir, federation = _export(tmp_path, strategy="fedbn")
    server, client = _configs(job_dir)
    # Assert: the controller gets the strategy and its private keys as plain JSON
    controller = server["workflows"][0]
    assert controller["path"] == "omnifm_monai.flare.controller.OmniFMController"
    assert controller["args"]["strategy"] == "fedbn"
    assert "backbone.bn1.running_mean" in controller["args"]["private_keys"]
    assert not any("conv" in k for k in controller["args"]["private_keys"])
    assert [c.name for c in federation.clients] == ["site-1", "site-2"]
    # the client script and a clean bundle travel with the job, referenced by relative paths
    executor = client["executors"][0]["executor"]["args"]
    assert executor["task_script_path"] == CLIENT_SCRIPT
    args = executor["task_script_args"].split()
    assert args[args.index("--num-classes") + 1] == str(len(federation.class_names))
    assert args[args.index("--scenario") + 1] == "cross_modality_hard"
    custom = job_dir / "app_site-1" / "custom"
    assert (custom / CLIENT_SCRIPT).is_file()
    assert (custom / "omnifm_classification" / "configs" / "train.json").is_file()
    assert not (custom / "omnifm_classification" / "models").exists()
    assert not (custom / "omnifm_classification" / "configs" / "logging.conf").exists()


def test_sites_with_their_own_data(tmp_path):
    settings, job_dir, federation = _export(
        tmp_path, strategy="omnifm", dataset_dir="/data/{site}/export.npz", num_classes=9
    )
    assert federation is None
    args = client_args(settings, "site-2", settings.num_classes).split()
    assert args[args.index("--dataset-dir") + 1] == "/data/site-2/export.npz"
    assert args[args.index("--num-classes") + 1] == "9" and "--scenario" not in args
    server, _ = _configs(job_dir)
    assert "psp.private_suffix" in server["workflows"][0]["args"]["private_keys"]
    with pytest.raises(ValueError, match="num_classes"):
        _export(tmp_path / "again", dataset_dir="/data/{site}.npz")


def test_arguments_cannot_hold_white_space(tmp_path):
    settings = JobSettings(state_root=str(tmp_path / "my state"))
    with pytest.raises(ValueError, match="white space"):
        client_args(settings, "site-1", 6)


def test_spectral_dp_filter_is_configured_on_each_site(tmp_path):
    _, job_dir, _ = _export(tmp_path, strategy="omnifm", strategy_options=SPECTRAL, spectral_dp_noise=6.0)
    _, client = _configs(job_dir)
    filters = [f for chain in client["task_result_filters"] for f in chain["filters"]]
    assert [f["path"] for f in filters] == ["omnifm_monai.flare.privacy.SpectralTokenPrivacy"]
    assert filters[0]["args"]["noise_multiplier"] == 6.0


def test_spectral_dp_without_a_spectral_upload_is_refused(tmp_path):
    # the default omnifm sends no spectral tokens: a DP budget for them would protect nothing
    with pytest.raises(ValueError, match=r"spectral_dp_noise=6.*omnifm.*spectral"):
        _export(tmp_path, strategy="omnifm", spectral_dp_noise=6.0)


def test_initial_global_model_follows_the_seed():
    # Prepare
    from omnifm_monai.jobs import build_network

    def initial_weights(seed):
        network, _ = build_network(JobSettings(strategy="fedavg", image_size=32, seed=seed), num_classes=6)
        return network.state_dict()

    # Execute
    first, again, other = initial_weights(0), initial_weights(0), initial_weights(1)
    # Assert: the same seed gives the same initial global model , another seed another
    key = "backbone.conv1.weight"
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first[key], other[key])


def test_spectral_dp_budget_and_ledger_reach_each_site(tmp_path):
    settings, job_dir, _ = _export(
        tmp_path, strategy="omnifm", strategy_options=SPECTRAL, spectral_dp_noise=6.0, spectral_dp_budget=4.0
    )
    _, client = _configs(job_dir)
    args = [f for chain in client["task_result_filters"] for f in chain["filters"]][0]["args"]
    assert args["budget"] == 4.0
    assert args["ledger"] == os.path.join(settings.site_dir("site-1"), "dp_ledger.json")


def test_job_meta_min_clients_lets_the_job_outlive_a_dead_site(tmp_path):
    # the default: one live site keeps the job running (NVFlare aborts below min_clients)
    _, job_dir, _ = _export(tmp_path / "default")
    assert json.loads((job_dir / "meta.json").read_text())["min_clients"] == 1
    _, job_dir, _ = _export(tmp_path / "every", min_clients=0)
    assert json.loads((job_dir / "meta.json").read_text())["min_clients"] == 2
    with pytest.raises(ValueError, match="min_clients must be in"):
        build_job(JobSettings(num_clients=2, min_clients=3))


def test_exported_job_declares_no_log_streaming(tmp_path):
    # whether a site streams its logs is the site's resources.json (allow_log_streaming), never the job's
    _, job_dir, _ = _export(tmp_path)
    server, client = _configs(job_dir)
    components = [c["path"] for c in server.get("components", []) + client.get("components", [])]
    assert not [path for path in components if "LogStreamer" in path or "LogReceiver" in path], components


def test_external_process_mode_starts_a_trainer_per_round(tmp_path):
    # a trainer process per round (launch_once off): a trainer that dies costs its site one round, not the job
    settings, job_dir, _ = _export(tmp_path, execution_mode="external_process")
    _, client = _configs(job_dir)
    executor = client["executors"][0]["executor"]["args"]
    assert executor["execution_mode"] == "external_process" and executor["launch_once"] is False
    assert executor["command"].startswith(f"python3 -u custom/{CLIENT_SCRIPT} --task classification ")
    assert f"--site-dir {settings.site_dir('site-1')} " in executor["command"]
    _, client = _configs(_export(tmp_path / "default")[1])  # the default runs inside NVFlare's job process
    assert client["executors"][0]["executor"]["args"]["execution_mode"] == "in_process"
    with pytest.raises(SystemExit):  # argparse: one line naming the choices
        from omnifm_monai.jobs.settings import parse_job_args

        parse_job_args(["--execution-mode", "subprocess"])


def test_the_server_starts_from_the_seeded_initial_weights(tmp_path):
    # the server's persistor loads the builder's seeded weights, not a network drawn from the server process's RNG
    from nvflare.apis.fl_constant import FLContextKey
    from nvflare.apis.fl_context import FLContext
    from nvflare.app_opt.pt import PTFileModelPersistor

    from omnifm_monai.jobs import INITIAL_MODEL_FILE, build_network

    settings, job_dir, federation = _export(tmp_path)
    server, _ = _configs(job_dir)
    persistor = next(c for c in server["components"] if c["id"] == "persistor")
    assert persistor["args"]["source_ckpt_file_full_name"] == INITIAL_MODEL_FILE
    assert (job_dir / "app_server" / "custom" / INITIAL_MODEL_FILE).is_file()
    torch.manual_seed(1234)  # the server process's RNG state: irrelevant now
    unseeded, _ = build_network(JobSettings(image_size=32, seed=99), federation.num_classes)
    context = FLContext()
    context.set_prop(FLContextKey.APP_ROOT, str(job_dir / "app_server"), private=True, sticky=False)
    loaded = PTFileModelPersistor(model=unseeded, source_ckpt_file_full_name=INITIAL_MODEL_FILE).load_model(context)
    expected, _ = build_network(settings, federation.num_classes)
    for key, value in expected.state_dict().items():
        assert torch.equal(torch.as_tensor(loaded["weights"][key]), value), key


def test_late_sites_reach_the_controller_and_modalities_the_sites(tmp_path):
    from omnifm_monai.jobs import parse_job_args

    settings, _ = parse_job_args(["--late-sites", "site-2:1", "--modalities", "CT,US"])
    assert (settings.late_sites, settings.modalities) == ({"site-2": 1}, ["CT", "US"])
    _, job_dir, federation = _export(tmp_path, late_sites={"site-2": 1}, modalities=["CT", "US"])
    server, client = _configs(job_dir)
    assert server["workflows"][0]["args"]["late_sites"] == {"site-2": 1}
    args = client["executors"][0]["executor"]["args"]["task_script_args"].split()
    assert args[args.index("--modalities") + 1] == "CT,US"
    assert "PET" not in federation.summary() and "US" in federation.summary()
