"""Which torch device to run on, and the mixed precision that device supports."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..core.config import DEVICES
from ..core.errors import DeviceError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("imgsim")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str = "cpu", local_rank: int | None = None) -> torch.device:
    """`cpu`, `cuda` (or `cuda:N`), `mps` or `auto` (a GPU when there is one) → a torch.device.

    Under torchrun each process takes the GPU of its local rank. A device this machine lacks is
    a DeviceError that says so, never a silent fall-back to the CPU.
    """
    import torch

    kind = (name or "cpu").strip().lower()
    base = kind.split(":", 1)[0]
    if base not in DEVICES:
        raise DeviceError(f"unknown device {name!r}; use one of {', '.join(DEVICES)}")
    if base == "auto":
        if torch.cuda.is_available():
            kind, base = "cuda", "cuda"
        elif _mps_available():
            return torch.device("mps")
        else:
            return torch.device("cpu")
    if base == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                "--device cuda: no CUDA GPU is visible to this torch build "
                f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch"
            )
        if kind == "cuda":
            return torch.device("cuda", local_rank or 0)
        return torch.device(kind)
    if base == "mps" and not _mps_available():
        raise DeviceError("--device mps: Apple's Metal backend is not available on this machine")
    return torch.device(kind)


def inference_device(name: str, runtime: str) -> str:
    """Where `runtime` embeds for --device `name`: `auto` picks only what that runtime can use.

    onnxruntime runs on the CPU, or on CUDA with onnxruntime-gpu's provider; it has no Metal
    backend. For it `auto` is CUDA when torch sees a GPU and the provider is installed, else
    the CPU (and the log says why); `cuda` or `mps` asked for by name still fail with a message.
    """
    if (name or "").strip().lower() == "cpu":  # the default: no need to import torch to know
        return "cpu"
    device = resolve_device(name)
    if runtime != "onnx" or device.type == "cpu" or (name or "").strip().lower() != "auto":
        return str(device)
    if device.type == "cuda" and _onnx_has_cuda():
        return str(device)
    log.info(
        "--device auto: embedding on the CPU; the onnx runtime cannot use the %s here "
        "(--runtime torch can; for CUDA, pip install onnxruntime-gpu)", device.type,
    )  # fmt: skip
    return "cpu"


def _onnx_has_cuda() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def autocast_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The reduced precision to autocast to on `device`, or None to run in float32.

    bfloat16 where the GPU has it (no loss scaling needed), float16 on older CUDA GPUs (with a
    GradScaler), float32 on the CPU and MPS: bf16 autocast gave no speed-up on CPUs here and
    MPS support for it varies between torch releases.
    """
    import torch

    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def describe(device: torch.device, dtype: torch.dtype | None) -> str:
    """A short human description, e.g. `cuda:0 (NVIDIA H100, bfloat16 autocast)`."""
    import torch

    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)}"
        name += f", {str(dtype).removeprefix('torch.')} autocast)" if dtype else ", float32)"
    return name
