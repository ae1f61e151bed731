"""Active learning: reference calculators (oracles) and the loop of ``nnip al``."""

from nnip.active.loop import ALConfig, load_al_config, run_active_learning
from nnip.active.oracles import LabelResult, Oracle, OracleError, PySCFCalculator, make_oracle

__all__ = ["ALConfig", "LabelResult", "Oracle", "OracleError", "PySCFCalculator",
           "load_al_config", "make_oracle", "run_active_learning"]
