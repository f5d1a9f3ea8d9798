"""Chain: steps run in order on named images, each on the inputs it is meant for, and undone in reverse."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

from medpipes.core.errors import InputError
from medpipes.core.image import Image
from medpipes.core.io import write_image
from medpipes.core.io.atomic import atomic_write_text
from medpipes.core.io.formats import suffix_of
from medpipes.core.processing.base import ImageSource, Preprocessor, Record, load_image, named_input, read_json_file


@dataclass(frozen=True, eq=False)
class ChainRecord:
    """What a chain run did: the input names, then per step the record of each image it touched."""

    inputs: tuple[str, ...]
    steps: tuple[tuple[str, Mapping[str, Record]], ...]

    def for_input(self, name: str) -> list[tuple[str, Record]]:
        """(step name, record) for each step that touched input ``name``, in the order run."""
        return [(step, records[name]) for step, records in self.steps if name in records]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (e.g. to undo a preprocessing run later)."""
        return {
            "inputs": list(self.inputs),
            "steps": [{"step": step, "records": {n: r.to_dict() for n, r in records.items()}} for step, records in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ChainRecord":
        """Inverse of ``to_dict``."""
        return cls(
            inputs=tuple(data["inputs"]),
            steps=tuple(
                (str(entry["step"]), {n: Record.from_dict(r) for n, r in entry["records"].items()}) for entry in data["steps"]
            ),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the record as JSON (atomically), e.g. to undo the spatial steps after inference."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ChainRecord":
        """Read a record written by ``save`` (or ``medpipes preprocess --record``)."""
        path = Path(path)
        data = read_json_file(path, "chain record not found; check the path", "not a readable JSON chain record ({exc})")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{path}: not a chain record (missing or malformed {exc}); write it with ChainRecord.save") from None


class Chain:
    """Steps applied in order to named images; ``invert`` undoes the spatial ones for one input."""

    def __init__(self, steps: Sequence[Preprocessor]) -> None:
        names = [step.name for step in steps]
        for name in names:
            if names.count(name) > 1:
                raise InputError(f"chain: two steps are named '{name}'; give one of them another name=")
        self.steps: tuple[Preprocessor, ...] = tuple(steps)

    def run(
        self,
        images: Mapping[str, ImageSource],
        only: Mapping[str, Sequence[str]] | None = None,
        *,
        labels: Collection[str] = (),
    ) -> tuple[dict[str, Image], ChainRecord]:
        """Run every step on its inputs; return all images (untouched ones as given) and the record.

        Inputs are Images or paths to read (those named in ``labels`` as label maps). A step runs on
        ``only[step.name]`` when given, else on its own ``on=[...]``, else on every input it applies
        to (intensity steps skip label maps). Naming an input explicitly that the step cannot take
        is an error, not a silent skip.
        """
        missing = sorted(set(labels) - set(images))
        if missing:
            raise InputError(f"chain: labels= names {missing}, which are not inputs {sorted(images)}; fix the names")
        loaded = {}
        for name, source in images.items():
            with named_input(name):
                image = load_image(source, label=name in labels)
            loaded[name] = image.as_label_map() if name in labels and not image.is_label else image
        images = loaded
        only = dict(only or {})
        unknown = sorted(set(only) - {step.name for step in self.steps})
        if unknown:
            raise InputError(
                f"chain: only= names step(s) {unknown} not in this chain; use one of {[s.name for s in self.steps]}"
            )
        current = dict(images)
        entries: list[tuple[str, Mapping[str, Record]]] = []
        for step in self.steps:
            targets = self._targets(step, current, only.get(step.name))
            results = step.apply_all({name: current[name] for name in targets}) if targets else {}
            for name, (image, _) in results.items():
                current[name] = image
            entries.append((step.name, {name: record for name, (_, record) in results.items()}))
        return current, ChainRecord(tuple(images), tuple(entries))

    @staticmethod
    def _targets(step: Preprocessor, current: Mapping[str, Image], chosen: str | Sequence[str] | None) -> list[str]:
        """The inputs ``step`` runs on: those chosen, else its ``on``, else all it applies to."""
        explicit = ((chosen,) if isinstance(chosen, str) else tuple(chosen)) if chosen is not None else step.on
        if explicit is None:
            return [name for name, image in current.items() if step.applies_to(image)]
        missing = [name for name in explicit if name not in current]
        if missing:
            raise InputError(
                f"{step.name}: set to run on {missing}, which are not among the inputs {sorted(current)}; "
                "fix its on=[...] or only="
            )
        return list(explicit)

    def invert(self, image: Image, record: ChainRecord, name: str) -> Image:
        """Undo, in reverse order, the spatial steps run on input ``name``: ``image`` comes back onto its grid."""
        if name not in record.inputs:
            raise InputError(f"chain: no input named '{name}' in this record; use one of {list(record.inputs)}")
        if [step for step, _ in record.steps] != [step.name for step in self.steps]:
            raise InputError(
                f"chain: the record's steps {[s for s, _ in record.steps]} are not this chain's "
                f"{[s.name for s in self.steps]}; invert with the chain that made the record"
            )
        for step, (_, records) in zip(reversed(self.steps), reversed(record.steps)):
            if step.spatial and name in records:
                with named_input(name):
                    image = step.invert(image, records[name])
        return image

    def run_files(
        self,
        paths: Mapping[str, ImageSource] | Sequence[str | os.PathLike[str]],
        out_dir: str | os.PathLike[str],
        *,
        labels: Collection[str] = (),
        only: Mapping[str, Sequence[str]] | None = None,
        suffix: str = ".nii.gz",
    ) -> tuple[dict[str, Path], ChainRecord]:
        """Read inputs, run the chain, write each result atomically as ``out_dir/<name><suffix>``.

        ``paths`` maps names to files or Images in memory (a plain list of files is named by file
        name without its suffix); inputs named in ``labels`` are read as label maps. Returns the
        written paths and the record.
        """
        named = dict(paths) if isinstance(paths, Mapping) else _names_from_files(paths)
        out_dir = Path(out_dir)
        targets = {name: out_dir / f"{name}{suffix}" for name in named}
        sources = {Path(p).resolve() for p in named.values() if not isinstance(p, Image)}
        for target in targets.values():
            if target.resolve() in sources:
                raise InputError(f"{target}: would overwrite an input; choose another output folder")
        results, record = self.run(named, only=only, labels=labels)
        out_dir.mkdir(parents=True, exist_ok=True)
        return {name: write_image(results[name], target) for name, target in targets.items()}, record


def _names_from_files(paths: Sequence[str | os.PathLike[str]]) -> dict[str, str | os.PathLike[str]]:
    """Name each path by its file name without the format suffix; refuse duplicates."""
    named: dict[str, str | os.PathLike[str]] = {}
    for path in paths:
        if not isinstance(path, (str, os.PathLike)):
            raise InputError(f"chain: got a {type(path).__name__} in a list of files; pass a mapping of names to images or paths")
        file_name = Path(path).name
        suffix = suffix_of(path)
        name = file_name[: -len(suffix)] if suffix and file_name.lower().endswith(suffix) else file_name
        if name in named:
            raise InputError(f"{path}: another input is also named '{name}'; pass a mapping of names to paths")
        named[name] = path
    return named
