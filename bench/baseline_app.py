"""The baseline: a raw uvicorn (uvloop, httptools) ASGI app calling the handler in-process.

This is the floor a function platform's warm path is measured against: HTTP
parsing and one Python call, with no sandbox, no auth and no routing.
"""

from __future__ import annotations

import json
import sys

import uvicorn


def handler(event, context):  # the same trivial handler the platform runs
    return {"hello": event.get("name", "world")}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    result = json.dumps(handler(json.loads(body or b"{}"), None)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(result)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": result})


if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools", log_level="warning"
    )
