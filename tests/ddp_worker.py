"""Runs `imgsim train` (one process, or one of torchrun's) with batch norm frozen, for tests.

Batch norm normalises each process's share of a batch with that share's statistics (PyTorch's
SyncBatchNorm, used on GPUs, does not run on the CPU); frozen, every image's embedding depends
on that image alone, so one process and several must agree to rounding.
"""

from __future__ import annotations

import sys

from torch import nn

from imgsim.cli.commands import main


def _frozen_train(self: nn.Module, mode: bool = True) -> nn.Module:
    nn.Module.train(self, mode)
    for module in self.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return self


if __name__ == "__main__":
    import imgsim.model.network

    imgsim.model.network.EmbeddingNet.train = _frozen_train  # type: ignore[method-assign]
    raise SystemExit(main(sys.argv[1:]))
