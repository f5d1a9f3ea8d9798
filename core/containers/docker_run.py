"""The host side of `medpipes docker run PIPELINE INPUT OUTPUT`: the `docker run` command line, built and checked.

The input is mounted read-only (a folder at /input, a file as /input/<name>), the output folder read-write
at /output, the model cache as a named volume at /cache, and the container runs as the caller
(``--user uid:gid``) so the outputs belong to them.
"""

from __future__ import annotations

import json
import os
import pkgutil
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from medpipes.core.errors import InputError, MedpipesError

IMAGE_REPOSITORY = "medpipes"
DEFAULT_CACHE_VOLUME = "medpipes-cache"
# Host settings the model store inside the container honours: passed by name (values never printed).
PASSED_ENV = (
    "MEDPIPES_MODEL_MIRRORS", "MEDPIPES_OFFLINE", "MEDPIPES_DOWNLOAD_TIMEOUT", "MEDPIPES_DOWNLOAD_RETRIES",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
)  # fmt: skip


@dataclass(frozen=True)
class DockerRunPlan:
    """A `docker run` command line and what it mounts."""

    argv: tuple[str, ...]
    image: str
    output_dir: Path

    def shell_line(self) -> str:
        """The command as one line a user can paste into a shell."""
        return shlex.join(self.argv)


def known_pipelines() -> list[str]:
    """The pipelines installed (packages under medpipes.pipelines)."""
    import medpipes.pipelines

    return sorted(m.name for m in pkgutil.iter_modules(medpipes.pipelines.__path__) if m.ispkg)


def pipeline_package(name: str) -> str:
    """``brain-extraction`` or ``brain_extraction`` -> ``brain_extraction``, checked to exist."""
    package = name.strip().replace("-", "_")
    known = known_pipelines()
    if package not in known:
        raise InputError(f"unknown pipeline '{name}'; known pipelines: {', '.join(known)}")
    return package


def image_name(pipeline: str, version: str, registry: str | None = None) -> str:
    """``[registry/]medpipes/<pipeline-with-dashes>:<version>``: how build_images.py tags pipeline images."""
    name = f"{IMAGE_REPOSITORY}/{pipeline.replace('_', '-')}:{version}"
    return f"{registry.rstrip('/')}/{name}" if registry else name


def default_image(pipeline: str) -> str:
    """The image of this medpipes version for ``pipeline``."""
    from importlib.metadata import version

    return image_name(pipeline, version("medpipes"))


def plan_docker_run(
    pipeline: str,
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    extra_args: Sequence[str] = (),
    *,
    image: str | None = None,
    docker: str = "docker",
    cache_volume: str = DEFAULT_CACHE_VOLUME,
    gpus: bool = False,
    user: tuple[int, int] | None = None,
    network: str | None = None,
    env: Mapping[str, str] | None = None,
) -> DockerRunPlan:
    """The `docker run` argv for one case; InputError (one line) for a missing input or an unusable output."""
    package = pipeline_package(pipeline)
    source = Path(input_path).expanduser()
    if not source.exists():
        raise InputError(f"{source}: input not found; give a DICOM folder, a DICOM zip or an image file")
    source = source.resolve()
    target = Path(output_dir).expanduser()
    if target.exists() and not target.is_dir():
        raise InputError(f"{target}: exists and is not a folder; give a folder for the outputs")
    target = target.resolve()
    if target == source or source in target.parents:
        raise InputError(f"{target}: the output folder lies inside the input {source}; choose a folder outside it")
    if not cache_volume or "/" in cache_volume:
        raise InputError(f"--cache-volume {cache_volume!r}: give a docker volume name such as {DEFAULT_CACHE_VOLUME}")
    uid, gid = user if user is not None else (os.getuid(), os.getgid())
    argv = [docker, "run", "--rm", "--user", f"{uid}:{gid}"]
    if gpus:
        argv += ["--gpus", "all"]
    if network:
        argv += ["--network", network]
    names: list[str] = []
    if source.is_dir():
        argv += ["--mount", _bind(source, "/input", readonly=True)]
    else:
        argv += ["--mount", _bind(source, f"/input/{source.name}", readonly=True)]
        names.append(source.name)
    argv += ["--mount", _bind(target, "/output", readonly=False)]
    argv += ["--mount", f"type=volume,source={cache_volume},target=/cache"]
    environment = os.environ if env is None else env
    for key in PASSED_ENV:
        if environment.get(key):
            argv += ["--env", key]
    chosen = image or default_image(package)
    argv += [chosen, *names, *extra_args]
    return DockerRunPlan(tuple(argv), chosen, target)


def has_nvidia_runtime(docker: str = "docker") -> bool:
    """True when `docker info` lists an nvidia runtime (then `--gpus all` is added)."""
    try:
        out = subprocess.run([docker, "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if out.returncode != 0:
        return False
    try:
        return any("nvidia" in name for name in json.loads(out.stdout or "{}"))
    except json.JSONDecodeError:
        return "nvidia" in out.stdout


def docker_run_command(plan: DockerRunPlan) -> int:
    """Create the output folder, run the plan (the container's output streams through); docker's exit code."""
    try:
        plan.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{plan.output_dir}: cannot create the output folder ({exc.strerror})") from None
    try:
        return subprocess.run(list(plan.argv)).returncode
    except FileNotFoundError:
        raise MedpipesError(
            f"{plan.argv[0]}: docker client not found; install Docker (https://docs.docker.com/engine/install/) "
            "or give its path with --docker"
        ) from None


def _bind(source: Path, target: str, readonly: bool) -> str:
    fields = ["type=bind", f"source={source}", f"target={target}"] + (["readonly"] if readonly else [])
    return ",".join(_csv_field(f) for f in fields)


def _csv_field(text: str) -> str:
    # --mount is parsed as CSV: a field holding a comma or a quote must be quoted.
    return '"' + text.replace('"', '""') + '"' if ("," in text or '"' in text) else text
