"""The entrypoint of a pipeline image: verified weights first, then the pipeline from /input to /output.

    docker run IMAGE [INPUT...] [PIPELINE OPTIONS]   # INPUTs: names under /input (default: /input itself)
    docker run IMAGE selftest [--device D]           # the golden case inside the image vs its stored result
    docker run IMAGE fetch                           # only bring the weights into the cache volume
    docker run IMAGE --help                          # works without weights or network

The image sets MEDPIPES_PIPELINE (which pipeline) and MEDPIPES_HOME=/cache (the model store's cache: mount
a volume there and the weights are downloaded once, then re-verified by sha256 at every start).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from pathlib import Path
from typing import Sequence

from medpipes.core.errors import InputError, MedpipesError

PIPELINE_ENV = "MEDPIPES_PIPELINE"
INPUT_DIR_ENV = "MEDPIPES_INPUT_DIR"
OUTPUT_DIR_ENV = "MEDPIPES_OUTPUT_DIR"
SELFTEST_DIR_ENV = "MEDPIPES_SELFTEST_DIR"
DEFAULT_INPUT_DIR = "/input"
DEFAULT_OUTPUT_DIR = "/output"
DEFAULT_SELFTEST_DIR = "/opt/medpipes/selftest"
PREFIX = "medpipes-container"

USAGE = """\
usage: docker run [DOCKER OPTIONS] IMAGE [INPUT...] [OPTIONS]
       docker run IMAGE selftest [--device D] | fetch | --help

Runs the {pipeline} pipeline on /input (a DICOM folder or zip, or images; or the INPUT names under
/input, in order) and writes its outputs to /output. At start the model's weights are taken from the
cache in $MEDPIPES_HOME ({home}), else downloaded there through the model store, and always
sha256-verified; mount a named volume there so they are downloaded once.
  selftest  run the golden case shipped in the image and compare it with its stored result
  fetch     only fetch and verify the weights (e.g. to fill the cache volume ahead of time)

Example (outputs owned by you):
  docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/t1_dicom:/input:ro" -v "$PWD/out:/output" \\
      -v medpipes-cache:/cache IMAGE
or, from a host with medpipes installed: medpipes docker run {pipeline} t1_dicom/ out/

The pipeline's options (given after the INPUTs; the image supplies INPUT... and OUTPUT_DIR):
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the image's command; MedpipesError -> one line on stderr and its exit code."""
    from medpipes.core.cli.main import error_line

    args = list(sys.argv[1:] if argv is None else argv)
    # PID 1 ignores SIGTERM unless a handler exists: make `docker stop` end the run at once.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return dispatch(args)
    except MedpipesError as exc:
        error_line(" ".join(str(exc).split()))
        return exc.exit_code
    except KeyboardInterrupt:
        error_line("interrupted")
        return 130


def dispatch(args: list[str]) -> int:
    """Choose help, selftest, fetch or a pipeline run from the arguments."""
    pipeline = pipeline_name()
    if not args and not _input_dir().exists():
        return print_help(pipeline)
    if args and args[0] in ("-h", "--help", "help"):
        return print_help(pipeline)
    if args and args[0] == "selftest":
        from medpipes.core.containers.selftest import run_selftest

        return run_selftest(pipeline, Path(os.environ.get(SELFTEST_DIR_ENV, DEFAULT_SELFTEST_DIR)), args[1:])
    if args and args[0] == "fetch":
        ensure_weights(pipeline_model(pipeline))
        return 0
    if args and args[0] == "run":
        args = args[1:]
    return run_pipeline_command(pipeline, args)


def pipeline_name() -> str:
    """The pipeline this image runs (MEDPIPES_PIPELINE), checked to be installed."""
    name = os.environ.get(PIPELINE_ENV, "").strip().replace("-", "_")
    if not name:
        raise InputError(f"{PIPELINE_ENV} is not set: the image must say which pipeline it runs (e.g. brain_extraction)")
    if importlib.util.find_spec(f"medpipes.pipelines.{name}") is None:
        raise InputError(f"{PIPELINE_ENV}={name}: no such pipeline installed in this image")
    return name


def pipeline_model(pipeline: str) -> str:
    """The manifest model id the pipeline's plan names."""
    spec = importlib.import_module(f"medpipes.pipelines.{pipeline}").spec()
    if not spec.model:
        raise InputError(f"pipeline {pipeline}: its pipeline.yaml names no model")
    return spec.model


def print_help(pipeline: str) -> int:
    """The image's usage, then the pipeline command's own options (no weights, no network)."""
    home = os.environ.get("MEDPIPES_HOME", "~/.cache/medpipes")
    print(USAGE.format(pipeline=pipeline, home=home))
    sys.stdout.flush()
    cli = importlib.import_module(f"medpipes.pipelines.{pipeline}.cli")
    cli.main(["--help"])
    return 0


def ensure_weights(model_id: str) -> dict[str, Path]:
    """Every file of the model, verified, downloading what the cache lacks; one line per file on stderr."""
    from medpipes.core.store import StoreConfig, check_file, fetch_model, load_manifest

    manifest = load_manifest()
    model = manifest.get(model_id)
    config = StoreConfig.from_env()
    before = {f.name: check_file(model, f, config).state for f in model.files}
    paths = fetch_model(model_id, manifest, config)
    for f in model.files:
        how = {"cached": "found in the cache", "shipped": "built into the image"}.get(before[f.name], "downloaded")
        print(
            f"{PREFIX}: weights {model.id} {model.version} {f.name}: {how}, sha256 verified ({f.sha256}) at {paths[f.name]}",
            file=sys.stderr,
        )
    return paths


def split_inputs(args: Sequence[str], input_dir: Path) -> tuple[list[Path], list[str]]:
    """Leading arguments up to the first option are INPUT names (under ``input_dir`` unless absolute); the rest
    are pipeline options. No INPUT names: ``input_dir`` itself is the one input."""
    names: list[str] = []
    rest = list(args)
    while rest and not rest[0].startswith("-"):
        names.append(rest.pop(0))
    inputs = [Path(n) if Path(n).is_absolute() else input_dir / n for n in names] or [input_dir]
    return inputs, rest


def check_inputs(inputs: Sequence[Path], input_dir: Path) -> None:
    """InputError (one line) when an input is missing or /input is empty."""
    for path in inputs:
        if not path.exists():
            raise InputError(
                f"{path}: not found in the container; mount your case there, e.g. "
                f'-v "$PWD/t1_dicom:{input_dir}:ro" (a folder) or -v "$PWD/t1.nii.gz:{input_dir}/t1.nii.gz:ro"'
            )
        if path.is_dir() and not any(path.iterdir()):
            raise InputError(f"{path}: the folder is empty; mount your DICOM folder or images there (-v PATH:{path}:ro)")


def check_output_dir(output_dir: Path) -> None:
    """InputError when the output folder cannot be written by this user (the usual cause: no --user)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{output_dir}: cannot create the output folder ({exc.strerror}); mount one with -v PATH:{output_dir}") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise InputError(
            f"{output_dir}: not writable by uid {os.getuid()}; run with --user \"$(id -u):$(id -g)\" so the outputs "
            "are written (and owned) by you"
        )


def run_pipeline_command(pipeline: str, args: Sequence[str]) -> int:
    """Check /input and /output, fetch the weights, then run the pipeline's command on them."""
    input_dir = _input_dir()
    output_dir = Path(os.environ.get(OUTPUT_DIR_ENV, DEFAULT_OUTPUT_DIR))
    inputs, options = split_inputs(args, input_dir)
    check_inputs(inputs, input_dir)
    check_output_dir(output_dir)
    model = _model_option(options) or pipeline_model(pipeline)
    if not model.endswith(".safetensors"):  # a checkpoint file given with --model needs no manifest weights
        ensure_weights(model)
    cli = importlib.import_module(f"medpipes.pipelines.{pipeline}.cli")
    argv = [*map(str, inputs), str(output_dir), *options]
    print(f"{PREFIX}: {cli.__name__.rsplit('.', 2)[-2]} {' '.join(argv)}", file=sys.stderr)
    return int(cli.main(argv) or 0)


def _model_option(options: Sequence[str]) -> str | None:
    """The value of --model among the pipeline options, if given."""
    for i, option in enumerate(options):
        if option.startswith("--model="):
            return option.split("=", 1)[1]
        if option == "--model" and i + 1 < len(options):
            return options[i + 1]
    return None


def _input_dir() -> Path:
    return Path(os.environ.get(INPUT_DIR_ENV, DEFAULT_INPUT_DIR))
