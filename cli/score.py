"""``mlv score PACKAGE INPUT OUTPUT``: batch predictions outside a pipeline, recorded as a run.

Thin: parse, call ``mlv.pipelines.score.score_outside`` (the score kind, run by the engine's
runner as a one-stage run), render.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mlv.cli.main import command, emit_json, out, workspace


@command("score")
def score(
    package: Annotated[str, typer.Argument(help="A model package directory (the 'out' of a package stage).")],
    input_: Annotated[str, typer.Argument(metavar="INPUT", help="A Parquet file or a directory of partitions.")],
    output: Annotated[str, typer.Argument(help="The directory to write: one part-NNNNN.parquet per input partition.")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Score again even if this ran before, and discard "
                                        "unsaved files at OUTPUT.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
) -> None:
    """Score INPUT with PACKAGE into OUTPUT (prediction, proba_<class>, mlv_package, mlv_input, mlv_row); `mlv trace
    OUTPUT` then reaches the raw training data."""
    from mlv.pipelines.score import score_outside

    result = score_outside(workspace(), package, input_, output, force=force)
    if json_:
        emit_json(result.to_dict())
        return
    how = f"run {result.run_id}" if result.state == "done" else f"restored from run {result.run_id}"
    out.print(f"scored {result.rows} rows in {result.partitions} partition(s) of '{result.input['path']}' with "
              f"'{result.package['path']}' ({result.package['digest'][:21]}…) → '{result.output}' ({how})")
