"""Provider kinds: how modelway talks to one kind of upstream.

The registry maps each `providers[].kind` to the class that serves it. A kind given as
"package.module:Class" is a user's own subclass of `modelway.providers.base.Provider`.
"""

PROVIDER_KINDS: dict[str, str] = {
    "openai": "modelway.providers.http:OpenAIProvider",
    "deepseek": "modelway.providers.http:DeepSeekProvider",
    "openai-compatible": "modelway.providers.http:HttpProvider",
    "vllm": "modelway.providers.http:HttpProvider",
    "gpustack": "modelway.providers.http:GPUStackProvider",
    "anthropic": "modelway.providers.http:AnthropicProvider",
    "simulated": "modelway.providers.simulated:SimulatedProvider",
}

# Public default base URLs; other kinds need base_url (or endpoint).
DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "deepseek": "https://api.deepseek.com",
    "anthropic": "https://api.anthropic.com/v1",
}

DEFAULT_MODELS_PATHS: dict[str, str] = {
    "gpustack": "/v1-openai/models",
}
