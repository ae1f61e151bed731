"""An EMT oracle that takes 0.3 s per frame, so that a test can kill ``nnip al`` while it
is labelling."""

import time

from ase.calculators.emt import EMT


class _SlowEMT(EMT):
    def calculate(self, *args, **kwargs):
        time.sleep(0.3)
        super().calculate(*args, **kwargs)


def make():
    """The slow EMT calculator (``tests.active.slow_emt:make``)."""
    return _SlowEMT()
