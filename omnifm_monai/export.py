"""TorchScript export of a bundle network that takes several inputs (the VQA bundle's ``(image, question)``).

``monai.bundle ckpt_export --use_trace True`` traces with one example tensor built from ``--input_shape`` (it
overwrites any ``inputs`` in ``--converter_kwargs``), and ``torch.jit.script`` cannot compile the OmniFM
networks (their forward keeps the last spectral token on ``self`` for the SPAlign loss). The VQA bundle's
``configs/export.json`` calls :func:`export_traced` instead, which does what ``ckpt_export`` does (load the
checkpoint into ``network_def``, trace, save with the metadata and config files embedded) with every input.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["export_traced"]

logger = logging.getLogger(__name__)


def export_traced(
    network: torch.nn.Module,
    *,
    ckpt_file: str | os.PathLike,
    filepath: str | os.PathLike,
    example_inputs: Sequence[torch.Tensor],
    meta_file: str | os.PathLike,
    extra_files: Sequence[str | os.PathLike] = (),
    atol: float = 1e-4,
) -> Path:
    """Trace ``network`` with the weights of ``ckpt_file`` and save it as ``ckpt_export`` does.

    Args:
        network: the bundle's ``network_def`` (built with the trained sizes).
        ckpt_file: the state dict (``models/model.pt``).
        filepath: the TorchScript file to write (``.ts`` added when missing).
        example_inputs: one example per forward argument, in order (batch size 1 is enough: the trace takes any).
        meta_file: the metadata embedded as ``metadata.json`` (the checkpoint's ``models/metadata.json``, which
            carries the class count, or the bundle's ``configs/metadata.json``).
        extra_files: JSON files embedded under their own names (``inference.json``, ``vocab.json``).
        atol: the traced module must give the eager outputs on the examples within this tolerance.

    Returns:
        the path written; read it back with ``monai.data.load_net_with_metadata(path, more_extra_files=...)``.

    Raises:
        ValueError: when the traced module's outputs differ from the eager network's.
    """
    from monai.data import save_net_with_metadata

    network.load_state_dict(torch.load(ckpt_file, map_location="cpu", weights_only=True))
    network = network.cpu().eval()
    inputs = tuple(x.cpu() for x in example_inputs)
    with torch.no_grad():
        traced = torch.jit.trace(network, inputs, check_trace=False)  # forward writes on self: no re-trace check
        if not torch.allclose(traced(*inputs), network(*inputs), atol=atol):
            raise ValueError(f"the traced network differs from '{ckpt_file}''s eager outputs by more than {atol}.")
    meta = json.loads(Path(meta_file).read_text())
    more = {Path(f).name: json.dumps(json.loads(Path(f).read_text())).encode() for f in extra_files}
    filepath = Path(filepath)
    prefix = filepath.with_suffix("") if filepath.suffix == ".ts" else filepath
    save_net_with_metadata(traced, str(prefix), include_config_vals=False, meta_values=meta, more_extra_files=more)
    logger.info(
        "Exported '%s' to '%s' (metadata from '%s', extra files %s).",
        ckpt_file,
        prefix.with_suffix(".ts"),
        meta_file,
        sorted(more),
    )
    return prefix.with_suffix(".ts")
