"""Build the base image and the pipeline images, tagged with the project version, with no network.

    .venv/bin/python scripts/build_images.py --local-base             # here: base from scripts/make_local_base.sh
    .venv/bin/python scripts/build_images.py --base-image nvidia/cuda:12.8.1-runtime-ubuntu24.04 \\
        --python-version 3.12 --torch torch==2.13.0                    # a CUDA image for --gpus all users
    .venv/bin/python scripts/build_images.py --local-base --push registry.example.org:5000 [--dry-run]

Steps: a wheelhouse under build/wheelhouse (the project's wheel, plus its runtime dependencies and torch,
downloaded once and reused while the requirements stay the same), one build context per image under
build/docker/ (wheels, and for a pipeline its selftest case: the demo input and the golden files), then
`docker build --network none` with the classic builder. Labels (model id, version, weights sha256,
licence) are read from models_manifest.yaml. `--dry-run` prints every command and runs none.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"
WHEELHOUSE = BUILD / "wheelhouse"
CONTEXTS = BUILD / "docker"
LOCAL_BASE_TAG = "medpipes/local-base:bookworm"
CPU_TORCH = "torch==2.13.0+cpu"  # a CPU build: the CUDA one would add gigabytes to a CPU image
# Wheel platforms accepted when the wheelhouse targets another Python than this one (pip download).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64", "any")  # fmt: skip


def project() -> dict:
    """pyproject.toml's [project] table."""
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def pipelines() -> list[str]:
    """Pipelines with a Dockerfile under containers/."""
    return sorted(p.parent.name for p in (REPO / "containers").glob("*/Dockerfile") if p.parent.name != "base")


def model_labels(pipeline: str) -> dict[str, str]:
    """Build args naming the pipeline's model: id, version, weights sha256 and licence (from the manifest)."""
    plan = yaml.safe_load((REPO / "pipelines" / pipeline / "pipeline.yaml").read_text(encoding="utf-8"))
    manifest = yaml.safe_load((REPO / "models_manifest.yaml").read_text(encoding="utf-8"))
    entry = next((m for m in manifest["models"] if m["id"] == plan["model"]), None)
    if entry is None:
        raise SystemExit(f"error: pipelines/{pipeline}/pipeline.yaml names model {plan['model']}, absent from models_manifest.yaml")
    return {
        "MODEL_ID": entry["id"],
        "MODEL_VERSION": str(entry["version"]),
        "WEIGHTS_SHA256": ",".join(f["sha256"] for f in entry["files"]),
        "MODEL_LICENSE": str(entry["license"]),
    }


class Runner:
    """Runs (or, in a dry run, prints) commands, timing each."""

    def __init__(self, dry_run: bool, docker: str) -> None:
        self.dry_run, self.docker = dry_run, docker
        self.env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder: no BuildKit daemon needed

    def __call__(self, argv: list[str], what: str) -> float:
        line = shlex.join(argv)
        print(("DOCKER_BUILDKIT=0 " if argv[0] == self.docker else "") + line, flush=True)
        if self.dry_run:
            return 0.0
        start = time.perf_counter()
        code = subprocess.run(argv, env=self.env, cwd=REPO).returncode
        seconds = time.perf_counter() - start
        if code:
            raise SystemExit(f"error: {what} failed (exit {code}): {line}")
        print(f"build_images: {what}: {seconds:.1f} s", flush=True)
        return seconds


def build_wheelhouse(run: Runner, torch_spec: str, python_version: str | None) -> Path:
    """build/wheelhouse/{project,deps}: the project's wheel (always rebuilt) and its dependencies (cached)."""
    pip = [sys.executable, "-m", "pip"]
    project_dir, deps_dir = WHEELHOUSE / "project", WHEELHOUSE / "deps"
    # Build from a clean copy of the sources: setuptools reuses an in-tree build/lib, which may hold stale files.
    source = WHEELHOUSE / "source"
    if not run.dry_run:
        shutil.rmtree(project_dir, ignore_errors=True)
        shutil.rmtree(source, ignore_errors=True)
        ignore = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "demo-output", "bench")
        shutil.copytree(REPO, source, ignore=ignore)
    run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(project_dir), str(source)], "project wheel")
    if not run.dry_run:
        shutil.rmtree(source)
    requirements = "\n".join([torch_spec, *project()["dependencies"]]) + "\n"
    stamp = deps_dir / "requirements.txt"
    target = ["--python-version", python_version, *(f"--platform={p}" for p in PLATFORMS)] if python_version else []
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == requirements:
        print(f"build_images: wheelhouse {deps_dir} is up to date (same requirements); reused", flush=True)
        return WHEELHOUSE
    if not run.dry_run:
        shutil.rmtree(deps_dir, ignore_errors=True)
        deps_dir.mkdir(parents=True)
        (deps_dir / "requirements.in").write_text(requirements, encoding="utf-8")
    run([*pip, "download", "--quiet", "--only-binary=:all:", *target, "-d", str(deps_dir),
         "-r", str(deps_dir / "requirements.in")], "dependency wheels")  # fmt: skip
    if not run.dry_run:
        stamp.write_text(requirements, encoding="utf-8")
    return WHEELHOUSE


def fresh_context(name: str, dockerfile: Path) -> Path:
    """An empty build context build/docker/<name> holding the Dockerfile."""
    context = CONTEXTS / name
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    shutil.copyfile(dockerfile, context / "Dockerfile")
    return context


def link_files(files: list[Path], folder: Path) -> None:
    """Hard-link (copy across file systems) ``files`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        try:
            os.link(f, folder / f.name)
        except OSError:
            shutil.copyfile(f, folder / f.name)


def base_context() -> Path:
    """build/docker/base: the Dockerfile, and wheels/ with every dependency wheel and requirements.txt."""
    context = fresh_context("base", REPO / "containers" / "base" / "Dockerfile")
    deps = WHEELHOUSE / "deps"
    link_files(sorted(deps.glob("*.whl")), context / "wheels")
    shutil.copyfile(deps / "requirements.txt", context / "wheels" / "requirements.txt")
    return context


def pipeline_context(pipeline: str) -> Path:
    """build/docker/<pipeline>: the Dockerfile, the project wheel and the selftest case with its golden files."""
    folder = REPO / "containers" / pipeline
    context = fresh_context(pipeline, folder / "Dockerfile")
    link_files(sorted((WHEELHOUSE / "project").glob("medpipes-*.whl")), context / "wheels")
    selftest = json.loads((folder / "selftest.json").read_text(encoding="utf-8"))
    files = [*selftest["inputs"], selftest["golden_mask"], selftest["golden_facts"]]
    link_files([REPO / f for f in files], context / "selftest")
    in_image = {**selftest, **{k: Path(selftest[k]).name for k in ("golden_mask", "golden_facts")},
                "inputs": [Path(f).name for f in selftest["inputs"]]}  # fmt: skip
    (context / "selftest" / "selftest.json").write_text(json.dumps(in_image, indent=2) + "\n", encoding="utf-8")
    return context


def main(argv: list[str] | None = None) -> int:
    """Build (and optionally push) the base and pipeline images; prints each command and its time."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", action="append", choices=pipelines(), help="only this pipeline (repeatable)")
    parser.add_argument("--local-base", action="store_true", help=f"build {LOCAL_BASE_TAG} (scripts/make_local_base.sh) and use it")
    parser.add_argument("--base-image", help="the base's BASE_IMAGE (default: the Dockerfile's CUDA runtime)")
    parser.add_argument("--torch", default=CPU_TORCH, help=f"torch requirement in the image (default {CPU_TORCH})")
    parser.add_argument("--python-version", help="the base image's Python (X.Y) when it differs from this one")
    parser.add_argument("--weights", choices=("fetch", "baked"), default="fetch", help="fetch at start (default) or bake in")
    parser.add_argument("--push", metavar="REGISTRY", help="tag the images REGISTRY/... and push them")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    parser.add_argument("--docker", default=os.environ.get("DOCKER", "docker"), help="docker client")
    args = parser.parse_args(argv)

    from medpipes.core.containers.docker_run import image_name  # the names `medpipes docker run` expects

    version = project()["version"]
    run = Runner(args.dry_run, args.docker)
    base_image = args.base_image
    if args.local_base:
        run(["bash", str(REPO / "scripts" / "make_local_base.sh"), LOCAL_BASE_TAG], "local base")
        base_image = base_image or LOCAL_BASE_TAG
    build_wheelhouse(run, args.torch, args.python_version)
    suffix = "" if args.weights == "fetch" else "-baked"
    base_tag = f"medpipes/base:{version}"
    images = [base_tag]
    build = [args.docker, "build", "--network", "none", "--force-rm"]
    base_args = ["--build-arg", f"BASE_IMAGE={base_image}"] if base_image else []
    context = "build/docker/<name>" if args.dry_run else None
    run([*build, "-t", base_tag, *base_args, context or str(base_context())], "base image")
    for pipeline in args.pipeline or pipelines():
        tag = image_name(pipeline, version) + suffix
        build_args = {"BASE_IMAGE": base_tag, "VERSION": version, "WEIGHTS": args.weights, **model_labels(pipeline)}
        flags = [x for k, v in build_args.items() for x in ("--build-arg", f"{k}={v}")]
        run([*build, "-t", tag, *flags, context or str(pipeline_context(pipeline))], f"{pipeline} image")
        images.append(tag)
    if not args.dry_run:
        for tag in images:
            size = subprocess.run([args.docker, "image", "inspect", "--format", "{{.Size}}", tag],
                                  capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
            print(f"build_images: {tag}: {int(size) / 1e6:.0f} MB", flush=True)
    if args.push:
        for tag in images:
            remote = f"{args.push.rstrip('/')}/{tag}"
            run([args.docker, "tag", tag, remote], f"tag {remote}")
            run([args.docker, "push", remote], f"push {remote}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
