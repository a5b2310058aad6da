"""The hello-world Quart-trio app, served exactly as ``ojs-actors serve`` serves ours.

``python -m bench._hello --port P`` runs ``ojs-actors serve`` itself with the app
factory swapped for a one-route app, so the Hypercorn configuration, the logging
set-up and the process layout are the server's own, whatever they become. The
idle actor system that ``serve`` opens alongside costs nothing per request.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

HELLO_PATH = "/hello"
HELLO_BODY = b'{"hello":"world"}'


def create_hello_app(*_: Any) -> QuartTrio:
    """A POST route that reads the request body (as any POST handler must) and answers
    a fixed small JSON body, 201 like an enqueue."""
    app = QuartTrio("bench_hello")

    @app.post(HELLO_PATH)
    async def hello() -> Response:
        await request.get_data()
        return Response(HELLO_BODY, status=201, content_type="application/json")

    return app


def main() -> None:
    from ojs_actors import cli

    # The package re-exports the function serve() under the module's own name.
    serve_module = importlib.import_module("ojs_actors.http.serve")

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    # serve() looks create_app up in its module at call time; fail loudly if that changes.
    if not hasattr(serve_module, "create_app"):
        raise SystemExit("ojs_actors.http.serve no longer has create_app: update bench/_hello.py")
    serve_module.create_app = create_hello_app  # type: ignore[attr-defined]
    raise SystemExit(cli.main(["serve", "--host", "127.0.0.1", "--port", str(port)]))


if __name__ == "__main__":
    main()
