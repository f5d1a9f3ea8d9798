"""`medpipes` umbrella command: sub-commands register here; MedpipesError becomes one red line."""

from __future__ import annotations

import sys

import typer

from medpipes.core.errors import MedpipesError

app = typer.Typer(
    name="medpipes",
    help="Deep-learning pipelines for medical imaging.\n\nExample: medpipes dicom ls /data/study",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"medpipes {version('medpipes')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Deep-learning pipelines for medical imaging. Example: medpipes dicom ls /data/study"""


_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    from medpipes.core.cli import convert as convert_cli

    app.command("convert", help=convert_cli.convert.__doc__)(convert_cli.convert)
    app.add_typer(convert_cli.dicom_app, name="dicom")
    from medpipes.pipelines.brain_extraction import cli as brain_extraction_cli

    app.command("brain-extraction", help=brain_extraction_cli.brain_extraction.__doc__)(
        brain_extraction_cli.brain_extraction
    )
    from medpipes.core.cli.models import models_app

    app.add_typer(models_app, name="models")
    from medpipes.core.cli import preprocess as preprocess_cli

    app.command("preprocess", help=preprocess_cli.preprocess.__doc__)(preprocess_cli.preprocess)
    from medpipes.core.cli import train as train_cli

    app.command("train", help=train_cli.train.__doc__)(train_cli.train)
    app.command("evaluate", help=train_cli.evaluate.__doc__)(train_cli.evaluate)
    from medpipes.core.cli.docker import docker_app

    app.add_typer(docker_app, name="docker")


def error_line(message: str) -> None:
    """Print one red line on stderr (plain text when not a terminal)."""
    text = f"error: {message}"
    if sys.stderr.isatty():
        text = f"\x1b[31m{text}\x1b[0m"
    print(text, file=sys.stderr)


def run_app(typer_app: typer.Typer, argv: list[str] | None = None, prog_name: str | None = None) -> int:
    """Run a typer app at the CLI edge: MedpipesError -> one line and exit 2 (bad input) or 1 (failed).

    Usage errors (unknown option, missing argument) are typer's own: usage text and exit code 2.
    Every medpipes command, the umbrella and each pipeline's, goes through here.
    """
    try:
        typer_app(args=argv, prog_name=prog_name, standalone_mode=True)
    except MedpipesError as exc:
        error_line(" ".join(str(exc).split("\n")))
        return exc.exit_code
    except KeyboardInterrupt:
        error_line("interrupted")
        return 130
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        error_line(str(exc.code))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the `medpipes` umbrella command; returns the exit code."""
    _register()
    return run_app(app, argv)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
