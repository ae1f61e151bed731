"""`train.compile`: the compiled training step trains to the same weights."""

from __future__ import annotations

import torch

from nnip.training import train
from nnip.training.checkpoint import load_checkpoint

from .conftest import small_config


def test_compiled_training_reproduces_the_eager_weights(emt_file, tmp_path):
    runs = {}
    for compile_ in (False, True):
        config = small_config(emt_file, tmp_path / str(compile_), epochs=2,
                              compile=compile_, threads=1)
        train(config, progress=False)
        runs[compile_] = load_checkpoint(tmp_path / str(compile_) / "checkpoint.pt")
    # 30 structures: batches of 4 and a last one of 2, one compilation serves both sizes
    assert runs[True]["step"] == runs[False]["step"] == 16
    for key, value in runs[False]["model"].items():
        # ~1e-14 for every weight; 5e-10 for the readout's last bias, whose gradient is
        # near zero (the per-element energies absorb it), where Adam's normalisation
        # magnifies the reordered sums of the fused kernels
        assert torch.allclose(runs[True]["model"][key], value, rtol=1e-8, atol=1e-8), key
