"""Protocol constants shared by the OmniFM controller, the server core and the client script.

Like ``monai.fl.utils.constants`` and NVFlare's ``app_constant``: every key of ``FLModel.meta`` and
every task name is spelled once, here, and imported by both sides of the exchange.
"""

from __future__ import annotations

__all__ = ["MetaKey", "TaskName"]


class MetaKey:
    """Keys of ``FLModel.meta`` exchanged between the controller and the clients."""

    ROUND = "omnifm_round"
    STRATEGY = "omnifm_strategy"
    PROTOTYPES = "omnifm_prototypes"  # server -> client, float32 (P, d_s)
    PROTOTYPE_LABELS = "omnifm_prototype_labels"  # server -> client, int64 (P,): the prototypes' classes
    TOKENS = "omnifm_spectral_tokens"  # client -> server, float32 (N, d_s)
    TOKEN_LABELS = "omnifm_spectral_token_labels"  # client -> server, int64 (N,): label-aware prototypes
    NUM_SAMPLES = "omnifm_num_samples"  # client -> server, int
    UPLOAD_BYTES = "omnifm_upload_bytes"  # client -> server, {"model": int, "spectral": int}
    DP_EPSILON = "omnifm_dp_epsilon"  # client filter -> server, [epsilon this round, epsilon so far, delta]
    DP_RDP_EPSILON = "omnifm_dp_rdp_epsilon"  # client filter -> server, float: epsilon so far by Renyi DP (Opacus)
    DP_BUDGET_SPENT = "omnifm_dp_budget_spent"  # client filter -> server, True: the DP budget is spent, no tokens
    AMPLITUDE_SPECTRA = "omnifm_amplitude_spectra"  # client -> server, float32 (M, C, *W): FedDG's low-band amplitudes
    AMPLITUDE_BANK = "omnifm_amplitude_bank"  # server -> client, float32 (M', C, *W): other sites' amplitudes
    TRAINING_FAILED = "omnifm_training_failed"  # client -> server, True: no update this round (see the site's log)
    SITE_ERROR = "omnifm_site_error"  # client -> server, str: why the site could not start (bad data or options)
    CONTROL_VARIATE = "omnifm_control_variate"  # server -> client (SCAFFOLD), {key: float32 array}: the server's c
    CONTROL_DELTA = "omnifm_control_delta"  # client -> server (SCAFFOLD), {key: float32 array}: c_i+ - c_i


class TaskName:
    """Names of the tasks the controller sends (``send_model(task_name=...)``)."""

    TRAIN = "train"  # train locally, send an update
    VALIDATE = "validate"  # evaluate the received model only (the final evaluation)
