"""The reference: a trivial Starlette JSON POST route and a trivial GET route on
uvicorn's default stack (h11, asyncio), the fixed yardstick of issue 14, so the
benchmark can say how close trustpub comes to what Starlette + uvicorn do at all on
this machine. The stack is named explicitly (``loop="asyncio"``, ``http="h11"``): with
uvloop and httptools installed, uvicorn's "auto" would pick them and move the yardstick.

    python bench/ceiling.py --port 8081
"""

from __future__ import annotations

import argparse
import json

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def echo(request: Request) -> Response:
    # Parse the body as the real endpoints do (JSON object, one string field), so the
    # ceiling pays for the same framework work: routing, body read, JSON in and out.
    data = json.loads(await request.body())
    value = data.get("jwt") if isinstance(data, dict) else None
    return JSONResponse({"ok": True, "length": len(value) if isinstance(value, str) else 0})


async def hello(request: Request) -> Response:
    return JSONResponse({"ok": True})


app = Starlette(
    routes=[Route("/echo", echo, methods=["POST"]), Route("/hello", hello, methods=["GET"])]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # One worker, uvicorn's default stack (h11 on asyncio, named so that installed
    # uvloop/httptools do not change it), no access log, no server header.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        loop="asyncio",
        http="h11",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
