"""DataCollection: cases of named DataGroups, built from folders, a CSV or an HDF5 file; lazy until asked."""

from __future__ import annotations

import csv
import glob
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from medpipes.core.data.group import DataGroup
from medpipes.core.data.sources import FileSource, Source
from medpipes.core.errors import GeometryError, InputError
from medpipes.core.image import Image

DEFAULT_LABEL_GROUPS: tuple[str, ...] = ("ground_truth",)
ID_COLUMNS: tuple[str, ...] = ("case", "case_id", "subject", "subject_id", "id")


class Case(Mapping[str, DataGroup]):
    """One case: its id, the subject it belongs to (for leak-free splits), named groups and scalar targets."""

    def __init__(
        self,
        case_id: str,
        groups: Mapping[str, DataGroup],
        *,
        subject: str | None = None,
        targets: Mapping[str, Any] | None = None,
    ) -> None:
        self.case_id = case_id
        self.subject = subject if subject is not None else case_id
        self.groups: dict[str, DataGroup] = dict(groups)
        self.targets: dict[str, Any] = dict(targets or {})

    def __getitem__(self, group: str) -> DataGroup:
        if group not in self.groups:
            raise KeyError(f"case '{self.case_id}': no group '{group}' (has {list(self.groups)})")
        return self.groups[group]

    def __iter__(self) -> Iterator[str]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def check_grids(self, groups: Sequence[str] | None = None) -> None:
        """GeometryError naming the case and both groups when the chosen groups are not on one grid."""
        names = list(groups) if groups is not None else list(self.groups)
        if not names:
            return
        first = self[names[0]].grid
        for name in names[1:]:
            other = self[name].grid
            if not first.matches(other):
                raise GeometryError(
                    f"case '{self.case_id}': group '{names[0]}' ({first.describe()}) and group '{name}' "
                    f"({other.describe()}) are on different grids; resample them onto one grid first "
                    "(e.g. medpipes.core.processing.Resample onto the reference)"
                )

    def load(self, groups: Sequence[str] | None = None) -> dict[str, Image]:
        """The chosen groups (default all), each stacked as a 4D Image, after checking they share one grid."""
        names = list(groups) if groups is not None else list(self.groups)
        self.check_grids(names)
        return {name: self[name].stacked() for name in names}

    def __repr__(self) -> str:
        return f"Case('{self.case_id}', subject='{self.subject}', groups={list(self.groups)}, targets={self.targets})"


class DataCollection(Mapping[str, Case]):
    """Ordered cases by id; ``collection[case_id][group]`` is a DataGroup (channel -> Image)."""

    def __init__(self, cases: Iterable[Case], *, source: str = "collection") -> None:
        self.cases: dict[str, Case] = {}
        for case in cases:
            if case.case_id in self.cases:
                raise InputError(f"{source}: case id '{case.case_id}' appears twice; give every case a unique id")
            self.cases[case.case_id] = case
        self.source = source
        self._augmentation: Any = None

    # --- augmentation assigned to the collection ---------------------------------------------------
    @property
    def augmentation(self) -> Any:
        """The Compose used by ``to_hdf5(augment=True)``, CaseDataset and PatchQueue when they are given none."""
        return self._augmentation

    @augmentation.setter
    def augmentation(self, value: Any) -> None:
        from medpipes.core.data.augment import Compose

        self._augmentation = value if value is None or isinstance(value, Compose) else Compose(list(value))

    # --- mapping ------------------------------------------------------------------------------
    def __getitem__(self, case_id: str) -> Case:
        if case_id not in self.cases:
            raise KeyError(f"{self.source}: no case '{case_id}'")
        return self.cases[case_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.cases)

    def __len__(self) -> int:
        return len(self.cases)

    @property
    def case_ids(self) -> list[str]:
        """Case ids in order."""
        return list(self.cases)

    @property
    def group_names(self) -> list[str]:
        """Group names of the first case (every case has the same groups)."""
        return list(next(iter(self.cases.values())).groups) if self.cases else []

    @property
    def subjects(self) -> list[str]:
        """Distinct subjects, in order of first appearance (splits are made over these)."""
        return list(dict.fromkeys(case.subject for case in self.cases.values()))

    def target(self, name: str) -> dict[str, Any]:
        """Per subject, the value of scalar target ``name`` (InputError when missing or inconsistent within a subject)."""
        out: dict[str, Any] = {}
        for case in self.cases.values():
            if name not in case.targets:
                raise InputError(f"{self.source}: case '{case.case_id}' has no target '{name}'; add the column")
            value = case.targets[name]
            if case.subject in out and out[case.subject] != value:
                raise InputError(
                    f"{self.source}: subject '{case.subject}' has {name}={out[case.subject]!r} and {value!r}; "
                    "a stratification column must be constant within a subject"
                )
            out[case.subject] = value
        return out

    def subset(self, subjects: Iterable[str]) -> DataCollection:
        """The cases of the given subjects (every case of each), in this collection's order."""
        wanted = set(subjects)
        unknown = wanted - set(self.subjects)
        if unknown:
            raise InputError(f"{self.source}: unknown subjects {sorted(unknown)[:5]}; check the split file")
        subset = DataCollection((c for c in self.cases.values() if c.subject in wanted), source=self.source)
        subset.augmentation = self.augmentation
        return subset

    def validate(self, groups: Sequence[str] | None = None) -> None:
        """Check every case's groups share one grid (headers only where possible)."""
        for case in self.cases.values():
            case.check_grids(groups)

    # --- builders -------------------------------------------------------------------------------
    @classmethod
    def from_folders(
        cls,
        root: str | os.PathLike[str],
        patterns: Mapping[str, str | Mapping[str, str]],
        *,
        label_groups: Sequence[str] = DEFAULT_LABEL_GROUPS,
        missing: str = "error",
    ) -> DataCollection:
        """Cases found by glob patterns under ``root``; ``{case}`` in each pattern is the case id.

        ``patterns = {"inputs": {"T1": "t1/{case}_T1.nii.gz"}, "ground_truth": "seg/{case}_seg.nii.gz"}``
        (a plain string is a one-channel group whose channel takes the group's name). ``missing="skip"``
        drops a case lacking a channel instead of raising.
        """
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: folder does not exist; pass the data root")
        if missing not in ("error", "skip"):
            raise InputError(f"missing={missing!r}: use 'error' or 'skip'")
        spec = _normalise_patterns(patterns)
        found: dict[tuple[str, str], dict[str, Path]] = {}
        for group, channels in spec.items():
            for channel, pattern in channels.items():
                found[(group, channel)] = _glob_cases(root, pattern)
        ids = sorted(set().union(*(set(v) for v in found.values())), key=_natural_key)
        if not ids:
            raise InputError(f"{root}: no file matches any of the patterns {spec}; check the patterns")
        cases = []
        for case_id in ids:
            lacking = [f"{g}/{c} ({spec[g][c]})" for (g, c), hits in found.items() if case_id not in hits]
            if lacking:
                if missing == "skip":
                    continue
                raise InputError(
                    f"{root}: case '{case_id}' has no file for {', '.join(lacking)}; "
                    "add the file, or pass missing='skip' to leave the case out"
                )
            groups = {
                group: DataGroup(
                    group,
                    {ch: FileSource(found[(group, ch)][case_id], group in label_groups) for ch in channels},
                    is_label=group in label_groups,
                    case_id=case_id,
                )
                for group, channels in spec.items()
            }
            cases.append(Case(case_id, groups))
        return cls(cases, source=str(root))

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike[str],
        *,
        label_groups: Sequence[str] = DEFAULT_LABEL_GROUPS,
        id_column: str | None = None,
        subject_column: str | None = None,
    ) -> DataCollection:
        """Cases from a CSV: an id column, one ``group/channel`` column per image path, other columns as targets.

        Paths are relative to the CSV's folder unless absolute. Numbers in target columns become floats
        (ints when whole); a ``subject`` column beside a ``case`` column groups several cases per subject.
        Every referenced file must exist (InputError naming the row and column otherwise).
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: CSV file does not exist; pass the collection's CSV")
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = list(reader)
        if not header:
            raise InputError(f"{path}: empty CSV; the first line must name the columns")
        id_col = id_column or next((c for c in ID_COLUMNS if c in header), header[0])
        if id_col not in header:
            raise InputError(f"{path}: no column '{id_col}'; the header is {header}")
        subj_col = subject_column or ("subject" if "subject" in header and id_col != "subject" else None)
        image_cols = {c: _split_column(c) for c in header if ("/" in c or ":" in c)}
        if not image_cols:
            raise InputError(
                f"{path}: no image column; name image columns 'group/channel' (e.g. 'inputs/T1', 'ground_truth/seg')"
            )
        target_cols = [c for c in header if c not in image_cols and c not in (id_col, subj_col)]
        seen: dict[str, int] = {}
        cases = []
        for row_number, row in enumerate(rows, start=2):  # line 1 is the header
            case_id = (row.get(id_col) or "").strip()
            if not case_id:
                raise InputError(f"{path}: row {row_number}: empty '{id_col}'; give every row an id")
            if case_id in seen:
                raise InputError(
                    f"{path}: row {row_number}: id '{case_id}' already on row {seen[case_id]}; "
                    "ids must be unique (use a 'subject' column to group several cases of one subject)"
                )
            seen[case_id] = row_number
            channels: dict[str, dict[str, Source]] = {}
            for column, (group, channel) in image_cols.items():
                value = (row.get(column) or "").strip()
                if not value:
                    raise InputError(f"{path}: row {row_number} (case '{case_id}'): column '{column}' is empty; fill it")
                file = Path(value) if Path(value).is_absolute() else path.parent / value
                if not file.exists():
                    raise InputError(
                        f"{path}: row {row_number} (case '{case_id}'), column '{column}': file {file} does not exist; "
                        "fix the path or remove the row"
                    )
                channels.setdefault(group, {})[channel] = FileSource(file, group in label_groups)
            groups = {
                g: DataGroup(g, chans, is_label=g in label_groups, case_id=case_id) for g, chans in channels.items()
            }
            targets = {c: _parse_scalar(row.get(c, "")) for c in target_cols}
            subject = (row.get(subj_col) or "").strip() if subj_col else None
            cases.append(Case(case_id, groups, subject=subject or None, targets=targets))
        if not cases:
            raise InputError(f"{path}: no rows after the header; add one row per case")
        return cls(cases, source=str(path))

    @classmethod
    def from_hdf5(cls, path: str | os.PathLike[str]) -> DataCollection:
        """A collection written by ``to_hdf5``; voxels are read only when asked."""
        from medpipes.core.data.hdf5 import read_collection

        return read_collection(Path(path))

    @classmethod
    def from_images(
        cls,
        cases: Mapping[str, Mapping[str, Mapping[str, Image]]],
        *,
        targets: Mapping[str, Mapping[str, Any]] | None = None,
        subjects: Mapping[str, str] | None = None,
    ) -> DataCollection:
        """A collection of in-memory images: ``{case_id: {group: {channel: Image}}}`` (label groups hold LabelMaps).

        ``subjects`` maps case id -> subject where several cases belong to one subject.
        """
        from medpipes.core.data.sources import ImageSource

        out = []
        for case_id, groups in cases.items():
            built = {}
            for group, channels in groups.items():
                is_label = all(image.is_label for image in channels.values())
                built[group] = DataGroup(
                    group, {ch: ImageSource(im, is_label) for ch, im in channels.items()}, is_label=is_label, case_id=case_id
                )
            out.append(Case(case_id, built, subject=(subjects or {}).get(case_id), targets=(targets or {}).get(case_id)))
        return cls(out, source="in-memory collection")

    # --- writing --------------------------------------------------------------------------------
    def to_hdf5(
        self,
        path: str | os.PathLike[str],
        *,
        augment: bool = False,
        augmentation: Any = None,
        copies: int = 1,
        seed: int = 0,
        compression: str | None = "gzip",
        compression_level: int = 4,
    ) -> Path:
        """Write every case (arrays, affines, metadata, targets) to one HDF5 file atomically; return its path.

        With ``augment=True``, ``copies`` versions of each case augmented by ``augmentation`` (default: the
        collection's own) are written as cases ``<id>_aug<n>`` of the same subject, seeded by ``seed``, so
        subject-level splits stay leak-free.
        """
        from medpipes.core.data.hdf5 import write_collection

        chosen = None
        if augment:
            chosen = augmentation if augmentation is not None else self.augmentation
            if chosen is None:
                raise InputError(
                    "to_hdf5(augment=True): no augmentation; set collection.augmentation = Compose([...]) or pass augmentation="
                )
            if not hasattr(chosen, "lazy"):
                from medpipes.core.data.augment import Compose

                chosen = Compose(list(chosen))
        elif augmentation is not None:
            raise InputError("to_hdf5: augmentation given but augment=False; pass augment=True to write augmented copies")
        return write_collection(
            self,
            Path(path),
            augmentation=chosen,
            copies=copies,
            seed=seed,
            compression=compression,
            compression_level=compression_level,
        )

    def __repr__(self) -> str:
        return f"DataCollection({len(self)} cases, groups={self.group_names}, source='{self.source}')"


def _normalise_patterns(patterns: Mapping[str, str | Mapping[str, str]]) -> dict[str, dict[str, str]]:
    if not patterns:
        raise InputError("patterns is empty; give {group: {channel: 'glob with {case}'}}")
    spec: dict[str, dict[str, str]] = {}
    for group, value in patterns.items():
        channels = {group: value} if isinstance(value, str) else dict(value)
        for channel, pattern in channels.items():
            if pattern.count("{case}") != 1:
                raise InputError(
                    f"pattern '{pattern}' (group '{group}', channel '{channel}') must contain '{{case}}' exactly once, "
                    "where the case id stands (e.g. 't1/{case}_T1.nii.gz')"
                )
        spec[group] = channels
    return spec


def _glob_cases(root: Path, pattern: str) -> dict[str, Path]:
    """Case id -> file for one pattern (InputError when one case matches several files)."""
    before, after = pattern.split("{case}")
    regex = re.compile(
        "^" + _glob_to_regex(before) + r"(?P<case>[^/]+?)" + _glob_to_regex(after) + "$"
    )
    hits: dict[str, Path] = {}
    for match in sorted(glob.glob(str(root / pattern.replace("{case}", "*")), recursive=True)):
        relative = Path(match).relative_to(root).as_posix()
        found = regex.match(relative)
        if not found:
            continue
        case_id = found.group("case")
        if case_id in hits:
            raise InputError(
                f"{root}: pattern '{pattern}' matches both {hits[case_id]} and {match} for case '{case_id}'; "
                "make the pattern specific enough to pick one file per case"
            )
        hits[case_id] = Path(match)
    return hits


def _glob_to_regex(text: str) -> str:
    out = []
    for char in text:
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
    return "".join(out)


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _split_column(column: str) -> tuple[str, str]:
    group, _, channel = column.replace(":", "/").partition("/")
    if not group or not channel:
        raise InputError(f"column '{column}': name image columns 'group/channel' (e.g. 'inputs/T1')")
    return group.strip(), channel.strip()


def _parse_scalar(text: str | None) -> Any:
    value = (text or "").strip()
    if value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
