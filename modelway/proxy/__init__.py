"""The request path: parse → map model → authorize → route → attempt → relay → record."""
