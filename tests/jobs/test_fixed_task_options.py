"""The fixed-task options (--scenario cross_modality_shared, --site-sizes, --label-map) reach every site."""

from __future__ import annotations

import json

from omnifm_monai.flare.client import parse_args as client_parse_args
from omnifm_monai.jobs import client_args, parse_job_args
from omnifm_monai.tasks import get_task


def test_site_sizes_and_label_map_travel_to_the_client(tmp_path):
    # Prepare
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"x": {"0": "normal"}}))
    argv = ["--scenario", "cross_modality_shared", "--clients", "2", "--site-sizes", "20, 10", "--image-size", "32"]
    settings, _ = parse_job_args([*argv, "--label-map", str(label_map)])
    # Execute
    line = client_args(settings, "site-2", num_classes=6)
    # Assert: the site's command line carries both options (no spaces), and parses back
    assert "--site-sizes 20,10" in line and f"--label-map {label_map}" in line
    parsed = client_parse_args(["--bundle-root", "b", *line.split()])
    assert (parsed.site_sizes, parsed.label_map) == ("20,10", str(label_map))


def test_server_and_site_build_the_same_unequal_federation():
    settings, _ = parse_job_args(["--scenario", "cross_modality_shared", "--clients", "2", "--site-sizes", "20,10",
                                  "--image-size", "32"])  # fmt: skip
    parsed = client_parse_args(["--bundle-root", "b", *client_args(settings, "site-1", num_classes=6).split()])
    task = get_task("classification")
    server, site = task.federation_from(settings), task.federation_from(parsed)
    # 20 and 10 images per site before the 60/20/20 split: 12 and 6 training images
    assert [c.num_samples("train") for c in server.clients] == [12, 6]
    assert (site.client("site-2").splits["train"][0] == server.client("site-2").splits["train"][0]).all()
