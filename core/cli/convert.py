"""`medpipes convert` (any image -> NIfTI/NRRD/MHA) and `medpipes dicom ls` (the series in a folder)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterable, Iterator, Optional

import typer

from medpipes.core.errors import InputError, MedpipesError, SeriesSelectionError
from medpipes.core.io.formats import Format, format_for_reading, format_for_writing, suffix_of

if TYPE_CHECKING:  # the DICOM stack is imported lazily: `medpipes --help` stays fast
    from medpipes.core.image import Image
    from medpipes.core.io.dicom import DicomScan, SeriesInfo

FOLDER_FORMATS = ("nii.gz", "nii", "nrrd", "mha")

dicom_app = typer.Typer(
    name="dicom",
    help="Inspect DICOM folders.\n\nExample: medpipes dicom ls /data/study --json",
    no_args_is_help=True,
    add_completion=False,
)


# --------------------------------------------------------------------------------------------
# medpipes dicom ls
# --------------------------------------------------------------------------------------------
@dicom_app.command("ls")
def ls(
    path: Annotated[Path, typer.Argument(help="A DICOM folder (searched recursively), a zip of one, or a file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")] = False,
) -> None:
    """List the DICOM series in a folder, zip or file: id, UID, number, size, geometry and flags.

    Example: medpipes dicom ls /data/study   (then: medpipes convert /data/study t1.nii.gz --series 19)
    """
    scan = _scan(path)
    if as_json:
        print(json.dumps(scan_to_dict(scan), indent=2))
    elif sys.stdout.isatty():
        _print_rich(scan)
    else:
        print(format_plain(scan))


def scan_to_dict(scan: DicomScan) -> dict[str, Any]:
    """The scan as JSON-ready data (every SeriesInfo field, counts, unreadable files with reasons)."""
    return {
        "root": str(scan.root),
        "n_files": scan.n_files,
        "n_non_dicom": scan.n_non_dicom,
        "unreadable": [{"path": str(p), "reason": r} for p, r in scan.unreadable],
        "series": [dataclasses.asdict(s) for s in scan.series],
    }


_COLUMNS = ("id", "uid", "number", "modality", "description", "slices", "volumes", "matrix", "spacing (mm)", "orient", "flags")


def _row(info: SeriesInfo) -> list[str]:
    """One table row: the UID shortened to its last 16 characters."""
    uid = info.series_instance_uid
    short_uid = uid if len(uid) <= 18 else "…" + uid[-16:]
    flags = ",".join(info.flags) + ("" if info.is_candidate else (" (skipped)" if info.flags else "(skipped)"))
    return [
        info.id,
        short_uid,
        "" if info.series_number is None else str(info.series_number),
        info.modality or "",
        info.description,
        str(info.n_slices),
        str(info.n_volumes),
        "x".join(str(m) for m in info.matrix),
        "x".join(f"{s:.3g}" for s in info.spacing_mm),
        info.orientation,
        flags,
    ]


def _footer(scan: DicomScan) -> list[str]:
    """Counts of files, non-DICOM files ignored and unreadable files, each unreadable one with its reason."""
    lines = [
        f"{scan.n_files} files: {len(scan.series)} series ({len(scan.candidates())} to convert), "
        f"{scan.n_non_dicom} non-DICOM ignored, {len(scan.unreadable)} unreadable"
    ]
    lines += [f"unreadable: {path}: {reason}" for path, reason in scan.unreadable]
    return lines


def format_plain(scan: DicomScan) -> str:
    """The series table as plain, space-aligned text (for pipes and logs) with its footer."""
    # aligned by hand: rich's tables draw box characters and colours meant for a terminal
    rows = [list(_COLUMNS)] + [_row(s) for s in scan.series]
    widths = [max(len(r[c]) for r in rows) for c in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines + _footer(scan))


def _print_rich(scan: DicomScan) -> None:
    """A rich table at its natural width; on a narrow terminal the UID column goes (see --json)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    short = {"number": "no.", "modality": "mod.", "volumes": "vols", "spacing (mm)": "spacing mm"}
    rows = [_row(info) for info in scan.series]
    widths = [max([len(short.get(col, col))] + [len(r[c]) for r in rows]) for c, col in enumerate(_COLUMNS)]
    keep = list(range(len(_COLUMNS)))
    if sum(w + 3 for w in widths) + 2 > console.width:
        keep.remove(_COLUMNS.index("uid"))
    natural = sum(widths[c] + 3 for c in keep) + 2  # padding and separators
    table = Table(title=str(scan.root), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for c in keep:
        col = _COLUMNS[c]
        justify = "right" if col in ("number", "slices", "volumes") else "left"
        table.add_column(short.get(col, col), justify=justify, no_wrap=True, min_width=widths[c])
    for info, row in zip(scan.series, rows):
        table.add_row(*(row[c] for c in keep), style=None if info.is_candidate else "dim")
    if natural > console.width:  # still too wide: print whole lines and let the terminal wrap them
        console = Console(width=natural)
    console.print(table)
    for line in _footer(scan):
        console.print(line, markup=False, highlight=False)


# --------------------------------------------------------------------------------------------
# medpipes convert
# --------------------------------------------------------------------------------------------
def convert(
    input: Annotated[Path, typer.Argument(help="DICOM folder/zip/file, NIfTI, NRRD or MHA.", show_default=False)],
    output: Annotated[
        Path,
        typer.Argument(
            help="A file (.nii.gz, .nii, .nrrd, .mha) for one image, or an existing folder for every series.",
            show_default=False,
        ),
    ],
    series: Annotated[
        Optional[str],
        typer.Option("--series", help="The series to convert: its id (see `medpipes dicom ls`), SeriesNumber or UID."),
    ] = None,
    resample_irregular: Annotated[
        bool,
        typer.Option(
            "--resample-irregular/--strict",
            help="Resample tilted, unevenly spaced or gapped series onto a regular grid (default), or fail.",
        ),
    ] = True,
    min_slices: Annotated[
        int, typer.Option("--min-slices", min=1, help="Fail when a series has fewer slices than this.")
    ] = 1,
    folder_format: Annotated[
        str, typer.Option("--format", help=f"File type written into an OUTPUT folder: {', '.join(FOLDER_FORMATS)}.")
    ] = "nii.gz",
) -> None:
    """Convert an image to NIfTI, NRRD or MHA; a DICOM folder converts one series or all of them.

    Examples: medpipes convert /data/study t1.nii.gz --series 19 ;
    medpipes convert /data/study out_folder/   (every series, with a JSON sidecar each)
    """
    irregular = "resample" if resample_irregular else "error"
    if folder_format not in FOLDER_FORMATS:
        raise InputError(f"--format {folder_format!r} is not supported; use one of {', '.join(FOLDER_FORMATS)}")
    if output.is_dir():
        plans = _plan_folder(input, output, series, irregular, min_slices, "." + folder_format)
        outputs = _write_all(plans, staged=True)
    else:
        outputs = _write_all([_plan_file(input, output, series, irregular, min_slices)], staged=False)
    for planned in outputs:  # after writing: a failure prints its one error line and nothing else
        for warning in planned.warnings:
            print(f"warning: {planned.label}: {warning}", file=sys.stderr)
    for planned in outputs:
        if planned.path is not None:
            print(f"{planned.path}  {planned.summary}")


@dataclass
class PlannedOutput:
    """One image to write, where, with which sidecar (None: no sidecar) and which warnings to print.

    A series that is not converted (a localizer, a broken series) has no image and no path: only its
    warning is printed. Once written, ``image`` is dropped and ``summary`` describes it.
    """

    image: Image | None
    path: Path | None
    sidecar: dict[str, Any] | None
    warnings: list[str]
    label: str
    summary: str = ""


def _plan_file(input: Path, output: Path, selector: str | None, irregular: str, min_slices: int) -> PlannedOutput:
    """Check OUTPUT before any reading, then load the one image it will hold."""
    if output.exists() and not output.is_file():
        raise InputError(f"{output}: exists and is not a file or folder; choose another OUTPUT")
    if not suffix_of(output):
        raise InputError(
            f"{output}: no such folder and no image suffix; create the folder to convert every series into it, "
            "or name a file .nii.gz, .nii, .nrrd or .mha"
        )
    format_for_writing(output)
    if not output.parent.is_dir():
        raise InputError(f"{output.parent}: output folder does not exist; create it first or choose another OUTPUT")
    _refuse_inside_input(input, output)
    _check_writable(output.parent)
    fmt = format_for_reading(input)
    if fmt is not Format.DICOM:
        image = _read_non_dicom(input, selector)
        return PlannedOutput(image, output, None, _warnings(image), str(input))
    scan = _scan(input)
    info = _select(scan, selector, output)
    image = _load(scan, info, irregular, min_slices)
    return PlannedOutput(image, output, None, _warnings(image), _label(info))


def _plan_folder(
    input: Path, folder: Path, selector: str | None, irregular: str, min_slices: int, suffix: str
) -> Iterator[PlannedOutput]:
    """Every candidate series (or the one chosen), loaded one at a time as the writer asks; named uniquely."""
    _refuse_inside_input(input, folder)
    _check_writable(folder)
    fmt = format_for_reading(input)
    taken = {p.name for p in folder.iterdir()}
    if fmt is not Format.DICOM:
        image = _read_non_dicom(input, selector)
        stem = _sanitise(input.name[: -len(suffix_of(input))] if suffix_of(input) else input.name)
        name = _unique(stem, suffix, taken)
        sidecar = {"Source": str(input), "SourceFileCount": 1, **_geometry(image)}
        yield PlannedOutput(image, folder / name, sidecar, _warnings(image), str(input))
        return
    scan = _scan(input)
    if selector is not None:
        infos = [_select(scan, selector, folder)]
    else:
        infos = scan.candidates()
        if not infos:
            raise InputError(
                f"{scan.root}: none of its {len(scan.series)} series is an image volume to convert "
                f"({', '.join(f'{s.id}: {_flags_text(s)}' for s in scan.series)}); "
                "pick one with --series ID to convert it anyway"
            )
    echoes = _echo_suffixes(scan)
    if selector is None:  # one warning line per reason a series is not converted
        skipped: dict[str, list[str]] = {}
        for s in scan.series:
            if not s.is_candidate:
                skipped.setdefault(s.notes[0] if s.notes else _flags_text(s), []).append(s.id)
        for reason, ids in skipped.items():
            yield PlannedOutput(None, None, None, [f"not converted ({reason})"], f"series {', '.join(ids)}")
    for info in infos:
        image = _load(scan, info, irregular, min_slices)
        name = _unique(_sanitise(_base_name(info)) + echoes.get(info.id, ""), suffix, taken)
        yield PlannedOutput(image, folder / name, _sidecar(scan, info, image), _warnings(image), _label(info))


def _write_all(plans: Iterable[PlannedOutput], *, staged: bool) -> list[PlannedOutput]:
    """Write each planned image (and sidecar) as it comes; return the plans, images dropped.

    ``staged``: images are written under hidden temporary names while later ones load, and renamed
    only when all are written; a failure anywhere removes everything this run wrote. Otherwise the
    single image goes straight through the (atomic) writer.
    """
    from medpipes.core.io import write_image
    from medpipes.core.io.atomic import atomic_write_text

    token = uuid.uuid4().hex[:8]
    written: list[tuple[Path, Path]] = []  # (temporary, final)
    renamed: list[Path] = []
    done: list[PlannedOutput] = []
    try:
        for planned in plans:  # for folder output, each series is loaded here, one at a time
            done.append(planned)
            if planned.image is None or planned.path is None:
                continue
            if not staged:
                _guard_os(planned.path, write_image, planned.image, planned.path)
            else:
                suffix = suffix_of(planned.path)
                tmp = planned.path.with_name(f".{planned.path.name}.{token}.partial{suffix}")
                written.append((tmp, planned.path))
                _guard_os(planned.path, write_image, planned.image, tmp)
                if planned.sidecar is not None:
                    json_path = _sidecar_path(planned.path)
                    tmp_json = json_path.with_name(f".{json_path.name}.{token}.partial")
                    written.append((tmp_json, json_path))
                    _guard_os(json_path, atomic_write_text, tmp_json, json.dumps(planned.sidecar, indent=2) + "\n")
            planned.summary = _summary(planned.image)
            planned.image = None  # free the voxels before the next series loads
        for tmp, final in written:
            _guard_os(final, os.replace, tmp, final)
            renamed.append(final)
    except BaseException:
        for path in [tmp for tmp, _ in written] + renamed:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    return done


def _summary(image: Image) -> str:
    spacing = "x".join(f"{s:.4g}" for s in image.spacing)
    return f"{'x'.join(str(n) for n in image.shape)}  {spacing} mm  {image.orientation}"


def _guard_os(where: Path, fn: Any, *args: Any) -> Any:
    """Call ``fn``; an OSError (permissions, full disk) or a SimpleITK write error becomes an InputError."""
    try:
        return fn(*args)
    except MedpipesError:
        raise
    except (OSError, RuntimeError) as exc:
        reason = getattr(exc, "strerror", None) or " ".join(str(exc).split())[-200:]
        raise InputError(f"{where}: cannot write ({reason}); choose a writable OUTPUT with free space") from None


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _scan(path: Path) -> DicomScan:
    """Scan a DICOM input; refuse other image formats and inputs without any DICOM series."""
    fmt = format_for_reading(path)
    if fmt is not Format.DICOM:
        raise InputError(
            f"{path}: is a {fmt.value} file, not DICOM; `medpipes dicom` reads DICOM folders, zips or files"
        )
    from medpipes.core.io.dicom import scan_dicom

    scan = scan_dicom(path)
    if not scan.series:
        from medpipes.core.errors import DicomError

        details = f"{scan.n_files} files, {scan.n_non_dicom} not DICOM, {len(scan.unreadable)} unreadable"
        if scan.unreadable:
            first, reason = scan.unreadable[0]
            details += f", e.g. {first}: {reason}"
        raise DicomError(f"{path}: no readable DICOM image series ({details}); point to the folder holding the .dcm files")
    return scan


def _select(scan: DicomScan, selector: str | None, output: Path) -> SeriesInfo:
    """The series to write into one file; several candidates and no --series fail with the choices."""
    candidates = scan.candidates()
    if selector is None and len(candidates) > 1:
        choices = "; ".join(
            f"{s.id} (number {s.series_number}, {s.description or '-'}, {s.n_slices} slices"
            f"{', ' + str(s.n_volumes) + ' volumes' if s.n_volumes > 1 else ''}"
            f"{', ' + ','.join(s.flags) if s.flags else ''})"
            for s in candidates
        )
        raise SeriesSelectionError(
            f"{scan.root}: {len(candidates)} series to choose from: {choices}; "
            f"add --series ID|NUMBER|UID, or give an existing folder instead of {output.name} to convert them all"
        )
    try:
        return scan.select(selector)
    except SeriesSelectionError as exc:
        message = str(exc)
        if "--series" not in message:
            message += "; list the series with `medpipes dicom ls` and pass one with --series"
        raise SeriesSelectionError(message) from None


def _load(scan: DicomScan, info: SeriesInfo, irregular: str, min_slices: int) -> Image:
    from medpipes.core.errors import DicomError
    from medpipes.core.io.dicom import load_series

    try:
        return load_series(scan, info, irregular=irregular, min_slices=min_slices)
    except DicomError as exc:
        message = str(exc)
        if str(scan.root) in message:
            raise
        raise type(exc)(f"{scan.root}: {message}") from None  # name the input the user gave


def _read_non_dicom(input: Path, selector: str | None) -> Image:
    from medpipes.core.io import read_image

    if selector is not None:
        raise InputError(f"{input}: --series applies to DICOM input only; drop --series {selector}")
    return read_image(input)


def _refuse_inside_input(input: Path, output: Path) -> None:
    """Writing into the input folder would modify the input (and be scanned next time)."""
    if input.is_dir() and output.resolve().is_relative_to(input.resolve()):
        raise InputError(f"{output}: is inside the input folder {input}; write outside it, inputs are never modified")


def _check_writable(folder: Path) -> None:
    """Fail before the (possibly long) reading when OUTPUT's folder does not take files."""
    try:
        with tempfile.NamedTemporaryFile(prefix=".medpipes-probe-", dir=folder):
            pass
    except OSError as exc:
        raise InputError(
            f"{folder}: cannot write there ({exc.strerror or exc}); choose a writable OUTPUT folder"
        ) from None


def _warnings(image: Image) -> list[str]:
    return [str(w) for w in image.meta.extra.get("warnings", [])]


def _label(info: SeriesInfo) -> str:
    number = "" if info.series_number is None or info.id == str(info.series_number) else f" (number {info.series_number})"
    return f"series {info.id}{number} {info.description}".rstrip()


def _flags_text(info: SeriesInfo) -> str:
    return ",".join(info.flags) or "not a candidate"


def _echo_suffixes(scan: DicomScan) -> dict[str, str]:
    """`_e1`, `_e2`, ... for the echoes of a multi-echo series (by echo time), as dcm2niix names them."""
    groups: dict[tuple[str, int | None], list[SeriesInfo]] = {}
    for info in scan.series:
        if "multi-echo" in info.flags:
            groups.setdefault((info.series_instance_uid, info.series_number), []).append(info)
    suffixes: dict[str, str] = {}
    for infos in groups.values():
        if len(infos) > 1:
            ordered = sorted(infos, key=lambda s: (s.echo_time_ms is None, s.echo_time_ms or 0.0, s.id))
            suffixes.update({s.id: f"_e{i + 1}" for i, s in enumerate(ordered)})
    return suffixes


def _base_name(info: SeriesInfo) -> str:
    """`<SeriesNumber>_<description>` like dcm2niix's `-f %s_%d`; the id stands in for a missing number."""
    number = info.id if info.series_number is None else str(info.series_number)
    description = info.description or info.modality or "series"
    return f"{number}_{description}"


def _sanitise(name: str) -> str:
    """Letters, digits, '.', '-' and '_' only; at most 80 characters; never empty or hidden."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    return clean[:80] or "image"


def _unique(stem: str, suffix: str, taken: set[str]) -> str:
    """``stem + suffix``, or with a counter when that name (or its sidecar) is already taken."""
    candidate, n = stem, 1
    while candidate + suffix in taken or candidate + ".json" in taken:
        n += 1
        candidate = f"{stem}_{n}"
    taken.update({candidate + suffix, candidate + ".json"})
    return candidate + suffix


def _sidecar_path(image_path: Path) -> Path:
    suffix = suffix_of(image_path)
    return image_path.with_name(image_path.name[: -len(suffix)] + ".json")


def _geometry(image: Image) -> dict[str, Any]:
    return {
        "Shape": list(image.shape),
        "SpacingMm": [round(s, 6) for s in image.spacing],
        "Orientation": image.orientation,
        "Affine": [[round(float(v), 6) for v in row] for row in image.affine],
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("medpipes")
    except PackageNotFoundError:
        return "unknown"


def _sidecar(scan: DicomScan, info: SeriesInfo, image: Image) -> dict[str, Any]:
    """Key metadata of one written image; EchoTime in seconds as BIDS and dcm2niix write it."""
    echo_ms = info.echo_time_ms
    return {
        "Source": str(scan.root),
        "SeriesId": info.id,
        "SeriesInstanceUID": info.series_instance_uid,
        "SeriesNumber": info.series_number,
        "SeriesDescription": info.description,
        "Modality": info.modality,
        "ImageType": info.image_type,
        "EchoTime": None if echo_ms is None else round(echo_ms / 1000.0, 8),
        "EchoTimeMs": echo_ms,
        "Flags": list(info.flags),
        "Warnings": _warnings(image),
        "Notes": [n for n in info.notes if n not in _warnings(image)],
        "SourceFileCount": info.n_files,
        **_geometry(image),
        "ConversionSoftware": "medpipes",
        "ConversionSoftwareVersion": _version(),
    }
