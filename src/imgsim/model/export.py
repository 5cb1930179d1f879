"""ONNX export of the embedding network: one self-describing .onnx file with a dynamic batch."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any

from ..core.config import ONNX_FILE
from ..core.errors import OnnxError
from ..core.fileio import atomic_path

log = logging.getLogger("imgsim")

INPUT_NAME = "images"  # uint8 N×3×S×S RGB, 0-255
OUTPUT_NAME = "embeddings"  # float32 N×D, L2-normalised
OPSET = 17  # onnxruntime 1.16+ and every current mobile runtime read it
INSTALL_HELP = "install them with: pip install onnx==1.23.2 onnxruntime==1.32.0"


def default_onnx_path(model_path: str | Path) -> Path:
    """Where `imgsim export --onnx` writes by default: ONNX_FILE beside the model file."""
    return Path(model_path).parent / ONNX_FILE


def onnx_bytes(model: Any, image_size: int, model_id: str = "") -> bytes:
    """The network as an ONNX model (uint8 images in, unit embeddings out), batch axis dynamic.

    The network normalises its input itself, so the file is all another runtime needs; the
    model id and input size are stored as metadata so a stale export is recognised.
    """
    import torch

    onnx = _require("onnx")
    model = model.eval().to("cpu")
    example = torch.zeros((2, 3, image_size, image_size), dtype=torch.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter warns that it is deprecated; the new one needs
        # onnxscript, a further dependency, for a network this plain.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    meta = {"imgsim.model_id": model_id, "imgsim.image_size": str(image_size)}
    meta["imgsim.input"] = f"{INPUT_NAME}: uint8 N×3×{image_size}×{image_size} RGB 0-255"
    meta["imgsim.output"] = f"{OUTPUT_NAME}: float32 N×D, L2-normalised"
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    return proto.SerializeToString()


def export_onnx(model_path: str | Path, out_path: str | Path | None = None) -> Path:
    """Write the model file's network as ONNX (default: ONNX_FILE beside it); returns the path."""
    from .network import load_model

    model, info = load_model(model_path)
    out = Path(out_path) if out_path else default_onnx_path(model_path)
    data = onnx_bytes(model, model.config.image_size, info["model_id"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(data)
    return out


def onnx_metadata(data: bytes) -> dict[str, str]:
    """The imgsim metadata of an ONNX model (empty for a foreign file)."""
    onnx = _require("onnx")
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and others for foreign bytes
        raise OnnxError(f"not an ONNX model: {exc}") from None
    return {p.key: p.value for p in proto.metadata_props if p.key.startswith("imgsim.")}


def onnx_for(model: Any, image_size: int, model_id: str, model_path: str | Path | None) -> bytes:
    """The exported file beside `model_path` when it holds this model, else a fresh export,
    kept there (atomically) for the next start.

    Exporting takes about a second and needs torch, so it is done once per model; a file
    made from other weights is never used (it would give other embeddings).
    """
    path = default_onnx_path(model_path) if model_path else None
    if path is not None and path.is_file():
        data = path.read_bytes()
        meta = onnx_metadata(data)
        if model_id and meta.get("imgsim.model_id") == model_id:
            return data
        log.info("%s was exported from another model; exporting this one", path)
    data = onnx_bytes(model, image_size, model_id)
    if path is not None and model_id:
        keep_onnx(data, path)
    return data


def kept_export_names(model_path: str | Path, model_id: str) -> bool:
    """Whether the export beside `model_path` names `model_id`: a byte search, so neither onnx
    nor a runtime is imported (the runtime checks the metadata properly when it loads it)."""
    try:
        return bool(model_id) and model_id.encode() in default_onnx_path(model_path).read_bytes()
    except OSError:
        return False


def keep_onnx(data: bytes, path: Path) -> None:
    """Write an export beside its model file; a read-only folder only costs the next start."""
    try:
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
    except OSError as exc:
        log.warning("cannot keep the ONNX export in %s (%s); each start exports again", path, exc)


def _require(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise OnnxError(f"the ONNX runtime needs the {name} package; {INSTALL_HELP}") from None
