"""Deployment: export (fused BN, decode / NMS in graph, dynamic batch, ONNX post-processing,
Ascend recipe), runners for .mindir / .onnx / .om with the project's pre/post-processing,
accuracy and speed of an exported artifact."""
