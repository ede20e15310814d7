"""Stage 8: the Studio — prompt apps (template, instruction, few-shot examples, parameters) that a person who is
not an ML engineer writes, tries in a playground, versions, tests against a set, and calls over HTTP.

It talks to any OpenAI-compatible URL (kollm serve, vLLM) and imports nothing from `kollm.serve`."""

from kollm.studio.config import StudioConfig

__all__ = ["StudioConfig"]
