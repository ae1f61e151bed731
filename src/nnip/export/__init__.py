"""Model files and exports: save/load with provenance (`model_file`)."""

from __future__ import annotations

from nnip.export.model_file import (
    FORMAT_VERSION,
    data_fingerprint,
    format_metadata,
    load_model,
    read_metadata,
    save_model,
)

__all__ = ["FORMAT_VERSION", "data_fingerprint", "format_metadata", "load_model",
           "read_metadata", "save_model"]
