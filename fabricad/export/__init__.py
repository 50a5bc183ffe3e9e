"""Export: ONNX bundles (see onnx_export) and their metadata (see bundle)."""
