"""The job carries the federation's class names to every site: given, from a simulation, or read from the sites."""

import json

import pytest

from omnifm_monai.data.federation_classes import decode_class_names
from omnifm_monai.jobs import JobSettings, build_job, client_args, parse_job_args
from omnifm_monai.jobs.builder import site_label_space
from tests.data.test_federation_classes import write_class_folders


def test_class_names_given_on_the_command_line(tmp_path):
    settings, _ = parse_job_args(["--dataset-dir", "/d/{site}", "--class-names", "CT,MR,X-ray", "--clients", "2"])
    assert settings.class_names == ["CT", "MR", "X-ray"]
    assert site_label_space(settings, ["site-1", "site-2"]) == (("CT", "MR", "X-ray"), 3)
    settings.num_classes = 2
    with pytest.raises(ValueError, match="num_classes=2 but 3 class names"):
        site_label_space(settings, ["site-1", "site-2"])


def test_class_names_read_from_the_sites_data_where_readable(tmp_path):
    # Prepare: site-1 lacks MR, site-2 lacks X-ray, site-3's folder is not on this machine
    write_class_folders(tmp_path / "site-1", ("CT", "X-ray"), per_class=1)
    write_class_folders(tmp_path / "site-2", ("CT", "MR"), per_class=1)
    settings = JobSettings(num_clients=3, dataset_dir=str(tmp_path / "{site}"))
    # Execute / Assert: the union, sorted as one site's folders would be
    assert site_label_space(settings, ["site-1", "site-2", "site-3"]) == (("CT", "MR", "X-ray"), 3)
    nowhere = JobSettings(num_clients=1, dataset_dir=str(tmp_path / "none-{site}"))
    with pytest.raises(ValueError, match="--class-names"):
        site_label_space(nowhere, ["site-1"])


def test_every_site_of_a_simulation_is_sent_its_class_names(tmp_path):
    settings = JobSettings(num_clients=2, num_rounds=1, image_size=32, samples_per_client=30)
    settings.state_root = str(tmp_path / "state")
    job, federation = build_job(settings)
    job.export_job(str(tmp_path / "jobs"))
    for site in ("site-1", "site-2"):
        config = tmp_path / "jobs" / settings.name / f"app_{site}" / "config" / "config_fed_client.json"
        words = json.loads(config.read_text())["executors"][0]["executor"]["args"]["task_script_args"].split()
        assert decode_class_names(words[words.index("--class-names") + 1]) == federation.class_names


def test_class_names_with_spaces_travel_as_one_word():
    settings = JobSettings(num_clients=2, dataset_dir="/d/{site}", class_names=["CT", "chest X ray"])
    words = client_args(settings, "site-2", 2, settings.class_names).split()
    assert decode_class_names(words[words.index("--class-names") + 1]) == ("CT", "chest X ray")
