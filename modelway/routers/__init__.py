"""Router plugins (SPEC section 6): how they are loaded (`chain.py`) and the ones modelway
ships — `rules:RuleRouter` (declarative conditions → a decision) and
`context:ContextWindowRouter` (a prompt too long for the model → the smallest that fits).

The plugin API itself is `modelway.plugins`; running the chain for a request is
`modelway.proxy.decide`.
"""
