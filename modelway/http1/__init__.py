"""A minimal HTTP/1.1 client for the proxy hot path: keep-alive pools of asyncio protocols
parsed by httptools. It does only what forwarding needs — one POST per connection at a
time, streamed responses, timeouts, TLS — at a fraction of a general client's cost."""
