"""The validation report opens in a real browser (headless Chromium) with its figures."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from ase.build import bulk
from matplotlib.image import imread

from nnip.physics.pair import pair_potential
from nnip.validate.report import validate


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_renders_in_headless_chromium(tmp_path):
    model = pair_potential("lj", ["Ar"], cutoff=8.0, epsilon=0.0104, sigma=3.4)
    crystal = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    validate(model, crystal, tmp_path / "report", checks=["dimers", "eos", "nve"],
             temperature_K=40.0, timestep_fs=4.0, nve_duration_fs=400.0, say=lambda _: None)
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", "--window-size=1200,2000", f"--screenshot={shot}",
                    (tmp_path / "report" / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = imread(shot)[..., :3]  # (2000, 1200, 3) floats in [0, 1]
    assert image.shape[:2] == (2000, 1200)
    # Figures were drawn: matplotlib's default blue (#1f77b4) lines and the green ticks
    # of passed checks are on the page, and the page is not blank.
    blue = np.all(np.abs(image - np.array([0x1F, 0x77, 0xB4]) / 255) < 0.08, axis=-1)
    green = np.all(np.abs(image - np.array([0x1A, 0x7F, 0x37]) / 255) < 0.1, axis=-1)
    assert blue.sum() > 500 and green.sum() > 20
    assert image.std() > 0.05
