"""`medpipes models list | info | fetch | verify | remove | bundle | import`: the model store from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from medpipes.core.store.config import StoreConfig
from medpipes.core.store.errors import CorruptFileError
from medpipes.core.store.manifest import Manifest, load_manifest
from medpipes.core.store.resolve import check_file

models_app = typer.Typer(
    help="Model weights: list, fetch (sha256-verified), verify, remove, and bundle/import for offline sites.\n\n"
    "Example: medpipes models fetch brain-extraction-unet",
    no_args_is_help=True,
)


def _manifest(ctx: typer.Context) -> Manifest:
    path = (ctx.obj or {}).get("manifest") if isinstance(ctx.obj, dict) else None
    return load_manifest(path)


@models_app.callback()
def _models(
    ctx: typer.Context,
    manifest: Optional[Path] = typer.Option(
        None, "--manifest", help="Manifest to use (default: $MEDPIPES_MANIFEST, else the installed one)."
    ),
) -> None:
    """Model weights. Example: medpipes models list"""
    ctx.obj = {"manifest": manifest}


@models_app.command("list")
def list_models(ctx: typer.Context) -> None:
    """List the manifest's models and whether their files are here. Example: medpipes models list"""
    manifest = _manifest(ctx)
    config = StoreConfig.from_env()
    if not manifest.models:
        typer.echo(f"0 models in {manifest.source}")
        return
    typer.echo(f"{'ID':<32} {'VERSION':<10} {'PIPELINE':<20} {'FILES':>5}  STATE")
    for model in manifest.models:
        states = [check_file(model, f, config).state for f in model.files]
        state = "ready" if all(s in ("cached", "shipped") for s in states) else ",".join(sorted(set(states)))
        typer.echo(f"{model.id:<32} {model.version:<10} {model.pipeline:<20} {len(model.files):>5}  {state}")


@models_app.command("info")
def info(ctx: typer.Context, model_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Show one model's manifest entry and its files. Example: medpipes models info brain-extraction-unet"""
    manifest = _manifest(ctx)
    model = manifest.get(model_id)
    config = StoreConfig.from_env()
    typer.echo(f"id: {model.id}\nversion: {model.version}\npipeline: {model.pipeline}\ntask: {model.task}")
    if model.description:
        typer.echo(f"description: {model.description}")
    typer.echo(f"license: {model.license}\nimported: {str(model.imported).lower()}")
    typer.echo("inputs: " + ", ".join(f"{i.name} ({i.modality})" for i in model.inputs))
    typer.echo("labels: " + ", ".join(f"{k}={v}" for k, v in model.labels.items()))
    typer.echo(f"architecture: {dict(model.architecture)}\npreprocessing: {dict(model.preprocessing)}")
    typer.echo(f"provenance: {model.provenance}\nmetrics: {dict(model.metrics)}")
    for f in model.files:
        status = check_file(model, f, config)
        typer.echo(f"file: {f.name}  {f.format}  {f.size} bytes  sha256 {f.sha256}  [{status.state}]")
        for url in f.urls:
            typer.echo(f"  url: {url}")
        if f.shipped:
            typer.echo(f"  shipped: {f.shipped}")


@models_app.command("fetch")
def fetch(ctx: typer.Context, model_ids: List[str] = typer.Argument(..., metavar="ID...")) -> None:
    """Bring the models' files into the cache, sha256-verified. Example: medpipes models fetch brain-extraction-unet"""
    from medpipes.core.store.resolve import fetch_model

    manifest = _manifest(ctx)
    for model_id in model_ids:
        manifest.get(model_id)  # every id checked before any download
    config = StoreConfig.from_env()
    for model_id in model_ids:
        for name, path in fetch_model(model_id, manifest, config).items():
            typer.echo(f"{model_id}: {name} OK ({path})")


@models_app.command("verify")
def verify_cmd(ctx: typer.Context, model_ids: Optional[List[str]] = typer.Argument(None, metavar="[ID...]")) -> None:
    """Check the sha256 of every shipped and cached file (no network). Example: medpipes models verify"""
    from medpipes.core.store.resolve import verify

    manifest = _manifest(ctx)
    statuses = verify(manifest, model_ids or None, StoreConfig.from_env())
    for s in statuses:
        where = f"  {s.path}" if s.path else f"  ({s.detail})"
        word = {"cached": "OK", "shipped": "OK", "missing": "MISSING", "corrupt": "CORRUPT"}[s.state]
        typer.echo(f"{word:<8} {s.model_id}/{s.version}/{s.name}  {s.state}{where}")
    ok = sum(s.ok for s in statuses)
    shipped = sum(s.state == "shipped" for s in statuses)
    corrupt = [s for s in statuses if s.state == "corrupt"]
    missing = [s for s in statuses if s.state == "missing"]
    if not manifest.models:
        typer.echo(f"0 files, OK: {manifest.source} lists no models yet, so nothing is shipped or cached")
        return
    typer.echo(f"{len(statuses)} files: {ok} OK ({shipped} shipped), {len(missing)} not fetched, {len(corrupt)} corrupt")
    if corrupt:
        names = ", ".join(f"{s.model_id}/{s.name}" for s in corrupt)
        raise CorruptFileError(
            f"{len(corrupt)} file(s) fail sha256: {names}; run `medpipes models fetch ID` to replace cached copies "
            "(a damaged shipped file needs a fresh install)"
        )
    if missing and model_ids:
        names = ", ".join(f"{s.model_id}/{s.name}" for s in missing)
        raise CorruptFileError(f"{len(missing)} file(s) not present: {names}; run `medpipes models fetch ID`")


@models_app.command("remove")
def remove(ctx: typer.Context, model_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Delete a model's cached files (shipped files stay). Example: medpipes models remove brain-extraction-unet"""
    from medpipes.core.store.resolve import remove_model

    config = StoreConfig.from_env()
    removed = remove_model(model_id, _manifest(ctx), config)
    typer.echo(f"{model_id}: removed {len(removed)} cached file(s) from {config.models_dir / model_id}")


@models_app.command("bundle")
def bundle_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="The .tar to write."),
    model_ids: Optional[List[str]] = typer.Argument(None, metavar="[ID...]"),
) -> None:
    """Write verified model files (all by default) to a tar for an offline site. Example: medpipes models bundle --out m.tar"""
    from medpipes.core.store.bundle import bundle

    entries = bundle(out, _manifest(ctx), model_ids or None, StoreConfig.from_env())
    total = sum(e.size for e in entries)
    typer.echo(f"{out}: {len(entries)} file(s), {total} bytes of weights, every sha256 verified")


@models_app.command("import")
def import_cmd(ctx: typer.Context, tar: Path = typer.Argument(..., metavar="FILE.tar")) -> None:
    """Verify a bundle's files against the manifest and put them in the cache. Example: medpipes models import m.tar"""
    from medpipes.core.store.bundle import import_bundle

    statuses = import_bundle(tar, _manifest(ctx), StoreConfig.from_env())
    for s in statuses:
        typer.echo(f"OK       {s.model_id}/{s.version}/{s.name}  {s.state}  {s.path}")
    typer.echo(f"{tar}: {len(statuses)} file(s) imported and verified")
