"""HTTP/1.1 for the proxy hot path, both sides parsed by httptools.

- server.py, cycle.py: the protocol uvicorn runs for each client connection, in place of
  its own httptools protocol, serving the ASGI app with less work per request;
- connection.py, pool.py: a minimal client, keep-alive pools of asyncio protocols. It does
  only what forwarding needs — one POST per connection at a time, streamed responses,
  timeouts, TLS — at a fraction of a general client's cost."""
