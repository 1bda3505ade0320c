"""Job building as library code: one federated job (settings, builder), the strategy comparison, POC runs.

``nvflare_jobs/*.py`` are the command lines over these, in the style of NVFlare's
``examples/hello-world/hello-pt/job.py``.
"""

from omnifm_monai.jobs.builder import (
    BUNDLE_OUTPUTS,
    CLIENT_ENTRY,
    CLIENT_SCRIPT,
    INITIAL_MODEL_FILE,
    REPO_ROOT,
    analytics_receiver,
    build_job,
    build_network,
    bundle_network,
    bundle_root,
    client_args,
    compact_json,
    export_job,
    federation_for,
    job_site_names,
    run_simulation,
    site_label_space,
    stage_site_files,
)
from omnifm_monai.jobs.comparison import (
    DEFAULT_STRATEGIES,
    MAIN_JOB_DEFAULTS,
    comparison_job_args,
    run_comparison,
    run_logged_errors,
    run_strategy,
)
from omnifm_monai.jobs.poc import PocResult, export_poc_job, run_poc
from omnifm_monai.jobs.run_summary import RunSummary, summarize_run
from omnifm_monai.jobs.settings import JobSettings, job_argument_parser, parse_job_args

__all__ = [
    "BUNDLE_OUTPUTS",
    "CLIENT_ENTRY",
    "CLIENT_SCRIPT",
    "DEFAULT_STRATEGIES",
    "INITIAL_MODEL_FILE",
    "MAIN_JOB_DEFAULTS",
    "REPO_ROOT",
    "JobSettings",
    "PocResult",
    "RunSummary",
    "analytics_receiver",
    "build_job",
    "build_network",
    "bundle_network",
    "bundle_root",
    "client_args",
    "compact_json",
    "comparison_job_args",
    "export_job",
    "export_poc_job",
    "federation_for",
    "job_argument_parser",
    "job_site_names",
    "parse_job_args",
    "run_comparison",
    "run_logged_errors",
    "run_poc",
    "run_simulation",
    "run_strategy",
    "site_label_space",
    "stage_site_files",
    "summarize_run",
]
