"""Best model → checkpoint file and ONNX; :func:`load_model` for anyone holding the file.

A checkpoint is a plain dict of tensors, strings, numbers and lists — the genome travels as
JSON-able data beside the ``state_dict`` — so it loads with ``torch.load(weights_only=True)``
and needs no AutoModel class registered with pickle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from automodel.errors import CheckpointError  # noqa: F401  (defined with the other errors, re-exported)
from automodel.evolution.genome import Genome
from automodel.store.files import replacing
from automodel.training.model import CandidateNet, build_model, plan_conv_blocks

FORMAT = "automodel-checkpoint-v2"
FORMAT_V1 = "automodel-checkpoint-v1"  # written by earlier versions; read and upgraded on load


def save_checkpoint(
    path: str | Path,
    genome: Genome,
    state_dict: dict[str, torch.Tensor],
    *,
    input_shape: tuple[int, int, int],
    classes: list[str],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write atomically: a crash or a full disk leaves the previous file intact."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "genome": genome.to_dict(),
        "input_shape": [int(v) for v in input_shape],
        "classes": [str(c) for c in classes],
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "metrics": dict(metrics or {}),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict, loaded safely; refuses files that are not AutoModel checkpoints."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {path} does not exist; give the path of a .pt file saved by AutoModel.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refusal, truncated file, not a torch file
        raise CheckpointError(
            f"model file {path} cannot be loaded safely ({type(exc).__name__}); only AutoModel "
            f"checkpoints holding plain tensors and data are accepted."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") not in (FORMAT, FORMAT_V1):
        raise CheckpointError(f"model file {path} is not an AutoModel checkpoint ({FORMAT}).")
    if payload["format"] == FORMAT_V1:
        payload = {**payload, "format": FORMAT, "state_dict": upgrade_v1_state_dict(payload)}
    return payload


def upgrade_v1_state_dict(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint written by an earlier version, renamed for today's modules.

    Earlier networks (plain blocks, flatten head) kept their layers in two flat sequences:
    ``features`` = per block conv, batch norm (if any), activation, pooling (if any), then an
    adaptive pool when the map was larger than 4×4; ``classifier`` = flatten, (dropout, linear,
    activation) per dense layer, dropout, linear. Today each block is one module
    (``features.B.conv``, ``features.B.norm``) and the adaptive pool opens the classifier.
    """
    genome = Genome.from_dict(payload["genome"])
    state = payload["state_dict"]
    renamed: dict[str, torch.Tensor] = {}
    old = 0
    for b, (block, plan) in enumerate(zip(genome.conv, plan_conv_blocks(genome, payload["input_shape"]))):
        for name in ("weight", "bias"):
            if f"features.{old}.{name}" in state:
                renamed[f"features.{b}.conv.{name}"] = state[f"features.{old}.{name}"]
        if block.batch_norm:
            for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                renamed[f"features.{b}.norm.{name}"] = state[f"features.{old + 1}.{name}"]
        old += 1 + int(block.batch_norm) + 1 + int(plan.pool is not None)
    side = plan_conv_blocks(genome, payload["input_shape"])[-1].out_hw if genome.conv else payload["input_shape"][1:]
    shift = 1 if max(side) > 4 else 0  # today's classifier starts with the adaptive pool
    for key, value in state.items():
        if key.startswith("classifier."):
            _, index, name = key.split(".", 2)
            renamed[f"classifier.{int(index) + shift}.{name}"] = value
        elif not key.startswith("features."):
            renamed[key] = value  # mean, std
    return renamed


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> CandidateNet:
    """Rebuild the saved network in eval mode.

    Input: float tensors N×C×H×W in [0, 1] at ``model.input_shape``; output: logits over
    ``model.classes``. Normalisation is inside the model.
    """
    payload = read_checkpoint(path)
    model = build_model(
        Genome.from_dict(payload["genome"]), payload["input_shape"], payload["classes"], payload["mean"], payload["std"]
    )
    model.load_state_dict(payload["state_dict"])
    model.metrics = payload.get("metrics", {})
    return model.to(map_location).eval()


def export_onnx(checkpoint: str | Path, out: str | Path) -> Path:
    """Write one self-contained ONNX file (weights inside, dynamic batch size) that gives the
    same logits as the checkpoint."""
    model = load_model(checkpoint)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, *model.input_shape)
    batch = torch.export.Dim("batch", min=1, max=65_536)
    # Written aside and renamed: two exports at once (page and CLI) never serve a half file.
    with replacing(out, suffix=".onnx") as tmp:
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    return out
