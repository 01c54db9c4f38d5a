"""The export stage: folding, ONNX / OpenVINO / TensorRT emitters and the artifact bundle."""
