"""Tests for device resolution: CPU everywhere, a clear error for a device that is missing."""

from __future__ import annotations

import pytest
import torch

from imgsim.core.errors import DeviceError
from imgsim.model import device as device_mod
from imgsim.model.device import autocast_dtype, resolve_device


def test_cpu_is_always_there() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(device_mod, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=3) == torch.device("cuda", 3)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_a_missing_gpu_is_an_error_not_a_silent_cpu_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="Metal"):
        resolve_device("mps")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")


def test_mixed_precision_only_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    assert autocast_dtype(torch.device("cpu")) is None
    assert autocast_dtype(torch.device("mps")) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert autocast_dtype(torch.device("cuda", 0)) == torch.bfloat16
    assert autocast_dtype(torch.device("cuda", 0), enabled=False) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert autocast_dtype(torch.device("cuda", 0)) == torch.float16


def test_auto_for_the_onnx_runtime_picks_only_what_onnxruntime_can_use(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from imgsim.model.device import inference_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(device_mod, "_onnx_has_cuda", lambda: False)  # the CPU onnxruntime
    assert inference_device("auto", "torch") == "cuda:0"
    with caplog.at_level("INFO", logger="imgsim"):
        assert inference_device("auto", "onnx") == "cpu"
    assert "onnxruntime-gpu" in caplog.text
    assert inference_device("cuda", "onnx") == "cuda:0"  # asked by name: the backend refuses it
    monkeypatch.setattr(device_mod, "_onnx_has_cuda", lambda: True)
    assert inference_device("auto", "onnx") == "cuda:0"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: True)  # a Mac: no Metal in onnx
    assert inference_device("auto", "torch") == "mps"
    assert inference_device("auto", "onnx") == "cpu"
    assert inference_device("cpu", "onnx") == "cpu"
