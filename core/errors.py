"""Exceptions that carry a one-line, actionable message; the CLI edge turns them into exit codes."""

from __future__ import annotations


class MedpipesError(Exception):
    """Base of every expected failure: the message names the file, key or value and the fix."""

    exit_code = 1


class InputError(MedpipesError):
    """The user's input is wrong or unsupported (exit code 2)."""

    exit_code = 2


class GeometryError(InputError):
    """An affine, grid or orientation is invalid or inconsistent."""


class DicomError(InputError):
    """A DICOM file or series cannot be read as asked."""


class SeriesSelectionError(DicomError):
    """Several series match and none was chosen (or the chosen one does not exist)."""


class ProcessingError(MedpipesError):
    """Valid input, but a processing step failed (exit code 1)."""
