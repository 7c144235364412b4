"""`mlv serve`: a model package behind HTTP, every prediction logged so `mlv trace <prediction-id>` works later."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from mlv.cli.main import command, err, workspace


@command("serve")
def serve(
    package: Annotated[str, typer.Argument(help="A package directory (the out of a package stage) or its digest.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: a free one, printed at start).")] = 8080,
    canary: Annotated[Optional[str], typer.Option("--canary", metavar="PKG:FRACTION",
                      help="Send this fraction of records to a second package (sticky by X-Request-Key or \"key\").")] = None,
    max_body: Annotated[int, typer.Option("--max-body", metavar="BYTES", help="Largest request body accepted.")] = 8 << 20,
    log_rows: Annotated[int, typer.Option("--log-rows", hidden=True, help="Rows per log segment.")] = 10_000,
    log_seconds: Annotated[float, typer.Option("--log-seconds", hidden=True, help="Seconds per log segment.")] = 60.0,
) -> None:
    """Answer POST /predict, GET /health, /metadata and /metrics until SIGTERM or Ctrl-C; then write the prediction log."""
    from mlv.pipelines import serving

    other, fraction = serving.parse_canary(canary) if canary else (None, 0.0)
    options = serving.ServeOptions(host=host, port=port, canary=other, fraction=fraction, max_body=max_body,
                                   log_rows=log_rows, log_seconds=log_seconds)
    written = serving.serve(workspace(), package, options, say=lambda line: print(line, flush=True))
    rows = sum(s.rows for s in written)
    err.print(f"stopped; logged {rows} prediction(s) in {len(written)} segment(s) (.mlv/predictions/)")
    sys.stdout.flush()
