"""One NVFlare simulator run of the job builder, as the integration tests start it: its logs, never its exit code."""

import glob
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

__all__ = ["REPO", "simulate"]


def simulate(tmp_path: Path, *options: str, timeout: int = 600) -> str:
    """Run ``nvflare_jobs.omnifm_job`` (2 sites, 1 round, 32 px unless ``options`` say otherwise).

    State goes to ``tmp_path/state``, the workspace to ``tmp_path/ws``. Returns stdout, stderr and every
    log file of the workspace: the simulator can exit 0 after a client crashed, so tests read these.
    """
    command = [
        sys.executable, "-m", "nvflare_jobs.omnifm_job", "--clients", "2", "--rounds", "1", "--threads", "2",
        "--image-size", "32", *options,
        "--state-root", str(tmp_path / "state"), "--workspace", str(tmp_path / "ws"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    logs = done.stdout + done.stderr
    for path in glob.glob(str(tmp_path / "ws" / "**" / "log*.txt"), recursive=True):
        logs += Path(path).read_text(errors="replace")
    return logs
