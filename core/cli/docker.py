"""`medpipes docker run PIPELINE INPUT OUTPUT [PIPELINE OPTIONS]`: run a pipeline image on one case."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

docker_app = typer.Typer(
    help="Run pipeline images. Example: medpipes docker run brain-extraction t1_dicom/ out/",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@docker_app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run(
    ctx: typer.Context,
    pipeline: Annotated[str, typer.Argument(help="Pipeline name, e.g. brain-extraction.")],
    input_path: Annotated[Path, typer.Argument(help="DICOM folder or zip, or an image file (mounted read-only).", metavar="INPUT")],
    output_dir: Annotated[Path, typer.Argument(help="Output folder (created; the outputs belong to you).", metavar="OUTPUT")],
    image: Annotated[Optional[str], typer.Option(help="Image to run (default: medpipes/<pipeline>:<this version>).")] = None,
    cache_volume: Annotated[str, typer.Option(help="Docker volume holding the verified weights (downloaded once).")] = "medpipes-cache",
    gpus: Annotated[Optional[bool], typer.Option("--gpus/--no-gpus", help="Pass --gpus all (default: when docker has an nvidia runtime).")] = None,
    network: Annotated[Optional[str], typer.Option(help="docker --network value (default: docker's).")] = None,
    docker: Annotated[str, typer.Option(help="The docker client to call.")] = "docker",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the docker run line and stop.")] = False,
) -> None:
    """Run PIPELINE's image on INPUT into OUTPUT; options after OUTPUT go to the pipeline (e.g. --n4).

    Prints the equivalent `docker run` line first.

    Example: medpipes docker run brain-extraction t1_dicom/ out/ --device cpu
    """
    from medpipes.core.containers.docker_run import docker_run_command, has_nvidia_runtime, plan_docker_run

    use_gpus = has_nvidia_runtime(docker) if gpus is None else gpus
    plan = plan_docker_run(
        pipeline, input_path, output_dir, list(ctx.args), image=image, docker=docker, cache_volume=cache_volume,
        gpus=use_gpus, network=network,
    )  # fmt: skip
    if dry_run:
        print(plan.shell_line())
        return
    print(plan.shell_line(), file=sys.stderr)
    code = docker_run_command(plan)
    if code:
        raise typer.Exit(code)
