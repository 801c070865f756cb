"""The accuracy gate: a reduced precision (bf16) against f32 over the sample video (python -m tools.accuracy)."""
