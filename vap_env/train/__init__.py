"""Training loops (accelerate)."""
