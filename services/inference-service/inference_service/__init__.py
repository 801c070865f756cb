"""Inference service: FastAPI + onnxruntime, with dynamic batching across requests."""
