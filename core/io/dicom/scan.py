"""Scanning a folder, zip or file of DICOM: which series are there, and which can become one image."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib

from medpipes.core.errors import DicomError, SeriesSelectionError
from medpipes.core.io.dicom.geometry import GeometryPlan, plan_geometry
from medpipes.core.io.dicom.grouping import Group, group_frames, natural_key, split_by_acquisition
from medpipes.core.io.dicom.headers import read_header
from medpipes.core.io.dicom.pixels import is_compressed, undecodable_reason
from medpipes.core.io.dicom.records import Frame
from medpipes.core.io.dicom.sources import list_sources


@dataclass(frozen=True)
class SeriesInfo:
    """One selectable series (or part of one) as `medpipes dicom ls` shows it."""

    id: str
    series_instance_uid: str
    series_number: int | None
    modality: str | None
    description: str
    n_files: int
    n_slices: int
    n_volumes: int
    matrix: tuple[int, int]
    spacing_mm: tuple[float, float, float]
    orientation: str
    flags: tuple[str, ...]
    echo_time_ms: float | None
    image_type: str
    is_candidate: bool
    notes: tuple[str, ...]


@dataclass
class _Entry:
    """What load_series needs beyond SeriesInfo: the frames' plan and any broken files."""

    group: Group
    plan: GeometryPlan
    broken: list[tuple[Path, str]]
    undecodable: str | None


@dataclass
class DicomScan:
    """Everything found under ``root``."""

    root: Path
    series: list[SeriesInfo]
    n_files: int
    n_non_dicom: int
    unreadable: list[tuple[Path, str]]
    _entries: dict[str, _Entry] = field(default_factory=dict, repr=False)

    def candidates(self) -> list[SeriesInfo]:
        """The series that can be read as one 3D/4D image (localizers and broken series excluded)."""
        return [s for s in self.series if s.is_candidate]

    def _choices(self, infos: list[SeriesInfo]) -> str:
        return ", ".join(f"{s.id}: {s.description or '(no description)'}" for s in infos)

    def select(self, selector: str | None) -> SeriesInfo:
        """The series named by id, SeriesNumber (when unique) or SeriesInstanceUID; None: the only candidate."""
        if not self.series:
            detail = f"; {len(self.unreadable)} unreadable: {self.unreadable[0][0]}: {self.unreadable[0][1]}" if self.unreadable else ""
            raise DicomError(f"{self.root}: no readable DICOM image series{detail}; re-export the series or remove the broken files")
        cands = self.candidates()
        if selector is None:
            if len(cands) == 1:
                return cands[0]
            if not cands:
                if len(self.series) == 1 and "localizer" not in self.series[0].flags:
                    return self.series[0]  # loading it explains why it is not convertible
                raise SeriesSelectionError(
                    f"{self.root}: no series is a convertible 3D/4D image (choices: {self._choices(self.series)}); "
                    "pass --series ID to force one"
                )
            raise SeriesSelectionError(
                f"{self.root}: {len(cands)} candidate series (choices: {self._choices(cands)}); pass --series ID"
            )
        selector = str(selector).strip()
        for s in self.series:
            if s.id == selector:
                return s
        by_uid = [s for s in self.series if s.series_instance_uid == selector]
        by_number = [s for s in self.series if selector.isdigit() and s.series_number == int(selector)]
        for matches in (by_uid, by_number):
            if len(matches) == 1:
                return matches[0]
            if matches:
                good = [s for s in matches if s.is_candidate]
                if len(good) == 1:
                    return good[0]
                raise SeriesSelectionError(
                    f"{self.root}: '{selector}' matches {len(matches)} series (choices: {self._choices(matches)}); "
                    "pass --series ID"
                )
        raise SeriesSelectionError(
            f"{self.root}: no series '{selector}' (choices: {self._choices(self.series)}); pass --series ID"
        )


def _info_for(group: Group, plan: GeometryPlan, broken: list[tuple[Path, str]], undecodable: str | None) -> SeriesInfo:
    frames = group.frames
    first: Frame = plan.order[0][0] if plan.order else frames[0]
    files = {f.file.source.path: f.file for f in frames}
    flags = set(plan.flags)
    if group.localizer:
        flags.add("localizer")
    if any(fi.is_multiframe for fi in files.values()):
        flags.add("multiframe")
    if any(fi.mosaic_tile is not None for fi in files.values()):
        flags.add("mosaic")
    if any(is_compressed(fi.transfer_syntax) for fi in files.values()):
        flags.add("compressed")
    if group.multi_echo:
        flags.add("multi-echo")
    if first.image_type.startswith("DERIVED"):
        flags.add("derived")
    notes: list[str] = []
    if plan.problem:
        notes.append(plan.problem)
    if undecodable:
        notes.append(undecodable)
    for path, reason in broken:
        notes.append(f"{path}: {reason}")
    if group.localizer:
        notes.append("localizer/scout: not a diagnostic volume")
    notes.extend(plan.warnings)
    order = ("localizer", "tilt", "uneven", "missing", "multiframe", "mosaic", "4d", "multi-echo", "single-slice", "compressed", "derived")
    return SeriesInfo(
        id=group.id,
        series_instance_uid=group.series_uid,
        series_number=first.file.series_number,
        modality=first.file.modality,
        description=first.file.description,
        n_files=len(files),
        n_slices=plan.n_slices,
        n_volumes=plan.n_volumes,
        matrix=(first.cols, first.rows),
        spacing_mm=tuple(round(s, 6) for s in plan.spacing),  # type: ignore[arg-type]
        orientation="".join(nib.aff2axcodes(plan.affine)),
        flags=tuple(f for f in order if f in flags),
        echo_time_ms=first.echo_time,
        image_type=first.image_type,
        # A series with a truncated file stays a candidate: loading it fails loudly, naming the file.
        is_candidate=not (group.localizer or plan.problem or undecodable),
        notes=tuple(notes),
    )


def scan_dicom(path: str | os.PathLike[str]) -> DicomScan:
    """Find every DICOM image series under ``path`` (a folder, searched recursively; a zip; one file)."""
    root, sources = list_sources(path)
    workers = min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(read_header, sources))
    frames: list[Frame] = []
    unreadable: list[tuple[Path, str]] = []
    broken_by_uid: dict[str, list[tuple[Path, str]]] = {}
    orphans: list[tuple[Path, str]] = []
    n_non_dicom = 0
    for src, res in zip(sources, results):
        if res.kind == "image":
            frames.extend(res.frames)
        elif res.kind == "unreadable":
            unreadable.append((src.path, res.reason))
            if res.series_uid:
                broken_by_uid.setdefault(res.series_uid, []).append((src.path, res.reason))
            else:
                orphans.append((src.path, res.reason))
        else:
            n_non_dicom += 1
    n_dicom = len(sources) - n_non_dicom
    if n_dicom == 0:
        raise DicomError(
            f"{root}: no DICOM files among {len(sources)} files; point at a folder (or zip) of DICOM images"
        )
    entries: dict[str, _Entry] = {}
    infos: list[SeriesInfo] = []
    for group in group_frames(frames):
        plan = plan_geometry(group.frames)
        parts = [(group, plan)]
        if plan.problem and len({f.acquisition for f in group.frames}) > 1:
            parts = [(g, plan_geometry(g.frames)) for g in split_by_acquisition(group)]
        for g, p in parts:
            files = {f.file.source.path: f.file for f in g.frames}
            undecodable = next((r for r in (undecodable_reason(fi) for fi in files.values()) if r), None)
            folders = {path.parent for path in files}
            broken = broken_by_uid.get(g.series_uid, []) + [
                (path, reason) for path, reason in orphans if path.parent in folders  # cut before its UID: likely ours
            ]
            entries[g.id] = _Entry(g, p, broken, undecodable)
            infos.append(_info_for(g, p, broken, undecodable))
    infos.sort(key=lambda s: (s.series_number is None, s.series_number or 0, natural_key(s.id)))
    return DicomScan(
        root=root,
        series=infos,
        n_files=len(sources),
        n_non_dicom=n_non_dicom,
        unreadable=unreadable,
        _entries=entries,
    )
