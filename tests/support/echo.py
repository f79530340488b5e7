"""A test upstream whose error answers echo what it was sent — every header (the gateway's
credential for it included), the query string and the path — in the body and in response
headers, as careless providers do. For the redaction tests: what a provider echoes of its
own key must not reach the client."""

from __future__ import annotations

from aiohttp import web

from support.upstream import Upstream


class EchoUpstream(Upstream):
    async def _post(self, request: web.Request) -> web.StreamResponse:
        behaviour = self.behaviour
        status = behaviour.token_status.get(request.headers.get("Authorization", ""), behaviour.status)
        for name, code in behaviour.header_status.items():
            if name in request.headers:
                status = code
        if status == 200 or behaviour.drop or behaviour.delay_before_headers_s:
            return await super()._post(request)
        raw = await request.read()
        self._record(request, raw, raw)
        echoed = {
            "error": {
                "message": f"{self.name} refused {request.method} {request.raw_path}"
                f" with headers {dict(request.headers)!r}",
                "type": "echo",
                "headers": dict(request.headers),
                "query": dict(request.query),
                "path": request.raw_path,
            }
        }
        headers = {f"x-echo-{name.lower()}": value for name, value in request.headers.items()}
        headers["x-echo-query"] = request.query_string
        if behaviour.retry_after:
            headers["Retry-After"] = behaviour.retry_after
        return web.json_response(echoed, status=status, headers=headers)
