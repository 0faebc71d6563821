"""The names of a model's weight files (no PyTorch here: reading a folder's layout needs none)."""

__all__ = ["ONNX_FILE", "WEIGHTS_FILE"]

#: Weights are stored as safetensors: loading them never runs code, unlike a pickle.
WEIGHTS_FILE = "model.safetensors"
#: The graph of an exported model (``ajuste export``), in place of the weights.
ONNX_FILE = "model.onnx"
