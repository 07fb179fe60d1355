"""The framework ceiling: a trivial Starlette JSON POST endpoint under the same uvicorn
settings as ``trustpub serve``, so the benchmark can say how close trustpub comes to
what Starlette + uvicorn can do at all on this machine.

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


app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same settings as trustpub.cli.serve.run: one worker, uvicorn's defaults for
    # the event loop and HTTP parser ("auto": uvloop/httptools only if installed, and
    # neither is a trustpub dependency), no access log, no server header.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
