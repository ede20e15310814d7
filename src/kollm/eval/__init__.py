"""Stage 4: evaluate models (bits-per-byte; Korean few-shot tasks come later)."""
