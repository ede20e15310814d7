"""Stage 5: generation and an OpenAI-compatible HTTP API."""
