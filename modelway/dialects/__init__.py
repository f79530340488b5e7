"""Dialects (OpenAI chat, Anthropic Messages, OpenAI Responses) and the translations between them."""
