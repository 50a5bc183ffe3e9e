"""Export: a checkpoint to an ONNX bundle (onnx_export), TensorRT plans and Triton model
repositories. The bundle's schema, which the runtime reads, is `fabricad.inference.bundle`."""
