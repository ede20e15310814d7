"""Placeholder tokens that PII masking writes into text; tokenizers keep each as one special token."""

PII_PLACEHOLDERS: tuple[str, ...] = (
    "<|rrn|>",  # resident registration number (주민등록번호)
    "<|phone|>",
    "<|email|>",
    "<|card|>",
    "<|brn|>",  # business registration number (사업자등록번호)
    "<|account|>",
)
