"""The shipped project.yml provisions mutual-TLS kits whose site names the exported job deploys to."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from omnifm_monai.jobs import JobSettings, build_job

PROJECT = Path(__file__).resolve().parents[2] / "nvflare_jobs" / "provisioning" / "project.yml"
HOSPITALS = ["hospital-a", "hospital-b"]


@pytest.fixture(scope="module")
def kits(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("provision")
    nvflare = Path(sys.executable).with_name("nvflare")
    subprocess.run([str(nvflare), "provision", "-p", str(PROJECT), "-w", str(workspace)], check=True, timeout=120)
    return workspace / "omnifm" / "prod_00"


def test_every_participant_has_an_mtls_kit(kits):
    for site in HOSPITALS:
        startup = kits / site / "startup"
        assert {"client.crt", "client.key", "rootCA.pem", "start.sh"} <= {p.name for p in startup.iterdir()}
        client = json.loads((startup / "fed_client.json").read_text())["client"]
        assert client["fqsn"] == site and client["connection_security"] == "mtls"
    server = kits / "fl-server.example.org" / "startup"
    assert {"server.crt", "server.key", "rootCA.pem"} <= {p.name for p in server.iterdir()}
    assert (kits / "admin@coordinator.org" / "startup" / "fl_admin.sh").is_file()


def test_no_site_streams_its_logs_to_the_server(kits):
    # error logs carry tracebacks and absolute paths: the provisioned sites keep them (resources.json)
    for site in HOSPITALS:
        resources = json.loads((kits / site / "local" / "resources.json.default").read_text())
        assert resources["allow_log_streaming"] is False, site


def test_kits_are_not_signed_and_the_root_ca_key_is_in_state(kits):
    # what docs/running.md tells the operator to protect: 2.9 signs no plain mTLS kit, and the
    # provisioning state holds the root CA's private key
    assert not list(kits.glob("*/startup/signature.json"))
    cert_state = json.loads((kits.parent / "state" / "cert.json").read_text())
    assert "BEGIN" in cert_state["root_pri_key"] and "PRIVATE KEY" in cert_state["root_pri_key"]


def test_submitters_may_ship_our_custom_code(kits):
    # the job carries custom/ (the bundle and the entry script): the submitter's role needs "byoc"
    policy = json.loads((kits / "hospital-a" / "local" / "authorization.json.default").read_text())["permissions"]
    assert policy["project_admin"] == "any" and policy["lead"]["byoc"] == "any"


def test_job_deploys_to_the_provisioned_site_names(tmp_path, kits):
    settings = JobSettings(
        strategy="omnifm",
        num_clients=2,
        num_rounds=1,
        dataset_dir="/data/omnifm/{site}.npz",
        num_classes=9,
        site_names=HOSPITALS,
        state_root=str(tmp_path / "state"),
    )
    job, _ = build_job(settings)
    job.export_job(str(tmp_path / "jobs"))
    job_dir = tmp_path / "jobs" / settings.name
    deploy_map = json.loads((job_dir / "meta.json").read_text())["deploy_map"]
    deployed = {site for sites in deploy_map.values() for site in sites}
    assert deployed == {"server", *HOSPITALS} and {p.name for p in kits.iterdir()} >= set(HOSPITALS)
    args = json.loads((job_dir / "app_hospital-b" / "config" / "config_fed_client.json").read_text())
    script_args = args["executors"][0]["executor"]["args"]["task_script_args"]
    assert "--dataset-dir /data/omnifm/hospital-b.npz" in script_args
    with pytest.raises(ValueError, match="distinct names"):
        build_job(JobSettings(num_clients=3, dataset_dir="/d/{site}", num_classes=2, site_names=HOSPITALS))
