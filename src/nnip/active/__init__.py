"""Active learning: reference calculators (oracles); committees and the loop follow."""

from nnip.active.oracles import LabelResult, Oracle, OracleError, PySCFCalculator, make_oracle

__all__ = ["LabelResult", "Oracle", "OracleError", "PySCFCalculator", "make_oracle"]
