"""Export a trained run for fast CPU prediction: ONNX, optionally with int8 weights (``ajuste export``)."""

from ajuste.export.onnx import ExportResult, export_run

__all__ = ["ExportResult", "export_run"]
