"""Validation of potentials: error tables, parity plots and learning curves."""

from nnip.validate.errors import (
    Predictions,
    compare_frames,
    error_table,
    evaluate,
    evaluation_files,
    format_error_table,
    parity_plots,
    plot_learning_curves,
    predict_frames,
    write_predictions,
)

__all__ = ["Predictions", "compare_frames", "error_table", "evaluate", "evaluation_files",
           "format_error_table", "parity_plots", "plot_learning_curves", "predict_frames",
           "write_predictions"]
