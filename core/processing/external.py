"""External-program step: write the image to a temporary file, run a command on it, read the result back.

For tools that exist only as programs (ANTs or 3D Slicer CLIs, FSL, FreeSurfer, ...). The command
is a template split like a shell line (no shell runs it) whose ``{input}`` and ``{output}``
placeholders become temporary file paths; e.g.
``ExternalProgram("N4BiasFieldCorrection -d 3 -i {input} -o {output}")``.
"""

from __future__ import annotations

import shlex
import shutil
import string
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medpipes.core.errors import GeometryError, InputError, ProcessingError
from medpipes.core.image import Image, LabelMap
from medpipes.core.io import read_image, write_image
from medpipes.core.processing.base import Preprocessor, Record
from medpipes.core.processing.grid import Grid

PLACEHOLDERS = ("input", "output")
OUTPUT_KINDS = ("same", "image", "label")


class ExternalProgram(Preprocessor):
    """Run ``command`` (a template with ``{input}`` and ``{output}``) on a temporary copy of each image.

    ``output_kind``: 'same' (the input's kind), 'image' or 'label'. ``same_grid=True`` makes a
    result on another grid an error (for programs that must not resample). ``labels=True`` lets the
    step take label maps. The step is not spatial: a program that changes the grid cannot be undone.
    """

    def __init__(
        self,
        command: str | Sequence[str],
        suffix: str = ".nii.gz",
        output_kind: str = "same",
        same_grid: bool = False,
        timeout_s: float | None = None,
        labels: bool = False,
        *,
        on: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(on=on, name=name or "external")
        self.arguments = tuple(shlex.split(command)) if isinstance(command, str) else tuple(str(a) for a in command)
        if not self.arguments:
            raise InputError(f"{self.name}: the command is empty; give e.g. 'prog -i {{input}} -o {{output}}'")
        used = set()
        for argument in self.arguments:
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(argument) if f is not None]
            except ValueError as exc:
                raise InputError(f"{self.name}: argument '{argument}' is not a valid template ({exc}); write literal braces as {{{{ }}}}") from None
            unknown = [f for f in fields if f not in PLACEHOLDERS]
            if unknown:
                raise InputError(
                    f"{self.name}: unknown placeholder {{{unknown[0]}}} in '{argument}'; valid: {{input}}, {{output}}"
                )
            used.update(fields)
        if "{" in self.arguments[0]:
            raise InputError(f"{self.name}: the program name '{self.arguments[0]}' holds a placeholder; put the program first, then its arguments")
        missing = [p for p in PLACEHOLDERS if p not in used]
        if missing:
            raise InputError(f"{self.name}: the command has no {{{missing[0]}}} placeholder; the program must read {{input}} and write {{output}}")
        if output_kind not in OUTPUT_KINDS:
            raise InputError(f"{self.name}: output_kind '{output_kind}' is not one of {', '.join(OUTPUT_KINDS)}")
        self.suffix = suffix if suffix.startswith(".") else "." + suffix
        self.output_kind = output_kind
        self.same_grid = bool(same_grid)
        self.timeout_s = timeout_s
        self.accepts_labels = bool(labels)  # type: ignore[misc]  # per instance: the class default is True

    @property
    def program(self) -> str:
        """The program the command runs (its first word)."""
        return self.arguments[0]

    def resolve_program(self) -> str:
        """The program's full path; InputError naming it when it is not found or not executable."""
        found = shutil.which(self.program)
        if found is None:
            where = "that path" if "/" in self.program else "PATH"
            raise InputError(
                f"{self.name}: program '{self.program}' not found on {where}; install it, add its folder to PATH "
                "or give its full path in the command"
            )
        return found

    def _apply(self, image: Image) -> tuple[Image, Record]:
        program = self.resolve_program()
        with tempfile.TemporaryDirectory(prefix="medpipes-external-") as folder:
            source = Path(folder) / f"input{self.suffix}"
            target = Path(folder) / f"output{self.suffix}"
            write_image(image, source)
            arguments = [program] + [a.format(input=source, output=target) for a in self.arguments[1:]]
            try:
                done = subprocess.run(arguments, capture_output=True, text=True, timeout=self.timeout_s, check=False)
            except subprocess.TimeoutExpired:
                raise ProcessingError(f"{self.name}: '{self.program}' ran longer than {self.timeout_s:g} s; raise timeout_s or check the program") from None
            except OSError as exc:
                raise ProcessingError(f"{self.name}: could not start '{self.program}': {exc.strerror or exc}") from None
            if done.returncode != 0:
                raise ProcessingError(
                    f"{self.name}: '{self.program}' failed with exit code {done.returncode}: {_last_line(done.stderr, done.stdout)}"
                )
            if not target.exists():
                raise ProcessingError(
                    f"{self.name}: '{self.program}' exited 0 but wrote no {{output}} file; check that the command writes to {{output}}"
                )
            try:
                result = read_image(target)
            except InputError as exc:
                raise ProcessingError(f"{self.name}: cannot read what '{self.program}' wrote: {exc}") from None
        if self.same_grid and not Grid.of(result).matches(Grid.of(image)):
            raise GeometryError(
                f"{self.name}: '{self.program}' returned an image on {Grid.of(result).describe()}, not the input's "
                f"{Grid.of(image).describe()}; drop same_grid=True if the program is meant to resample"
            )
        kind = self.output_kind if self.output_kind != "same" else ("label" if image.is_label else "image")
        if kind == "label":
            out: Image = LabelMap(result.array, result.affine, image.meta)
        else:
            array = result.array if result.array.dtype.kind == "f" else result.array.astype(np.float32)
            out = Image(array, result.affine, image.meta)
        return out, Record(self.name)

    def __repr__(self) -> str:
        return f"ExternalProgram({shlex.join(self.arguments)!r})"


def _last_line(*texts: str) -> str:
    """The last non-empty line of the first text that has one (stderr, then stdout)."""
    for text in texts:
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "(no output)"


__all__ = ["OUTPUT_KINDS", "PLACEHOLDERS", "ExternalProgram"]
