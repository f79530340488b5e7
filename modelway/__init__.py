"""modelway: an OpenAI/Anthropic-compatible LLM gateway and model router."""

__version__ = "0.1.0"
