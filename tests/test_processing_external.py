"""External-program step: real programs (sh, python) run on temporary files; clear errors when they are missing or fail."""

from __future__ import annotations

import shlex
import sys
import textwrap

import numpy as np
import pytest

from medpipes.core.errors import GeometryError, InputError, ProcessingError
from medpipes.core.image import Image, LabelMap
from medpipes.core.processing import Chain
from medpipes.core.processing.external import ExternalProgram

PYTHON = shlex.quote(sys.executable)


@pytest.fixture
def image() -> Image:
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[:3, 3] = (4.0, -3.0, 10.0)
    return Image(np.arange(10 * 20 * 30, dtype=np.float32).reshape(10, 20, 30), affine)


@pytest.fixture
def doubler(tmp_path) -> str:
    """A tiny python program that reads {input} with nibabel and writes twice its values to {output}."""
    script = tmp_path / "double.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import nibabel as nib
            img = nib.load(sys.argv[1])
            nib.save(nib.Nifti1Image(img.get_fdata() * 2, img.affine), sys.argv[2])
            """
        )
    )
    return f"{PYTHON} {shlex.quote(str(script))} {{input}} {{output}}"


def test_program_output_is_read_back_with_geometry(image, doubler):
    out = ExternalProgram(doubler).apply(image)
    assert np.allclose(out.array, image.array * 2)
    assert np.allclose(out.affine, image.affine) and not out.is_label


def test_shell_command_through_sh_c(image):
    out = ExternalProgram(["sh", "-c", "cp {input} {output}"], same_grid=True).apply(image)
    assert np.array_equal(out.array, image.array)


def test_label_maps_need_labels_true_and_come_back_as_label_maps(image):
    seg = LabelMap((image.array > 3000).astype(np.uint8), image.affine)
    with pytest.raises(InputError, match="LabelMap"):
        ExternalProgram("cp {input} {output}").apply(seg)
    out = ExternalProgram("cp {input} {output}", labels=True).apply(seg)
    assert out.is_label and np.array_equal(out.array, seg.array)
    images_only, _ = Chain([ExternalProgram("cp {input} {output}")]).run({"t1": image, "seg": seg})
    assert images_only["seg"] is seg


def test_missing_program_names_it_and_the_fix(image):
    step = ExternalProgram("medpipes-no-such-program-xyz -i {input} -o {output}")
    with pytest.raises(InputError) as err:
        step.apply(image)
    assert "program 'medpipes-no-such-program-xyz' not found on PATH" in str(err.value)
    assert "install it" in str(err.value)
    with pytest.raises(InputError, match="not found on that path"):
        ExternalProgram("/opt/nowhere/bin/prog {input} {output}").apply(image)


def test_failing_program_reports_exit_code_and_last_stderr_line(image):
    command = ["sh", "-c", "echo starting >&2; echo 'ERROR: cannot open atlas.nii' >&2; exit 3", "{input}", "{output}"]
    with pytest.raises(ProcessingError) as err:
        ExternalProgram(command).apply(image)
    assert "'sh' failed with exit code 3: ERROR: cannot open atlas.nii" in str(err.value)


def test_program_that_writes_nothing_is_a_clear_error(image):
    with pytest.raises(ProcessingError, match="exited 0 but wrote no \\{output\\} file"):
        ExternalProgram(["sh", "-c", "true", "{input}", "{output}"]).apply(image)


def test_timeout_is_a_clear_error(image):
    with pytest.raises(ProcessingError, match="ran longer than 0.5 s"):
        ExternalProgram(["sh", "-c", "exec sleep 5", "{input}", "{output}"], timeout_s=0.5).apply(image)


def test_result_on_another_grid_is_refused_when_same_grid(image, tmp_path):
    script = tmp_path / "crop.py"
    script.write_text(
        "import sys, nibabel as nib\n"
        "img = nib.load(sys.argv[1])\n"
        "nib.save(nib.Nifti1Image(img.get_fdata()[2:], img.affine), sys.argv[2])\n"
    )
    command = f"{PYTHON} {shlex.quote(str(script))} {{input}} {{output}}"
    assert ExternalProgram(command).apply(image).spatial_shape == (8, 20, 30)
    with pytest.raises(GeometryError, match="shape \\(8, 20, 30\\).*not the input's shape \\(10, 20, 30\\)"):
        ExternalProgram(command, same_grid=True).apply(image)


def test_command_template_errors_name_the_valid_placeholders():
    with pytest.raises(InputError, match="unknown placeholder \\{mask\\}.*valid: \\{input\\}, \\{output\\}"):
        ExternalProgram("prog {input} {mask} {output}")
    with pytest.raises(InputError, match="no \\{output\\} placeholder"):
        ExternalProgram("prog {input}")
    with pytest.raises(InputError, match="command is empty"):
        ExternalProgram("")


def test_nan_input_is_refused_before_the_program_runs(image):
    array = image.array.copy()
    array[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        ExternalProgram("medpipes-no-such-program-xyz {input} {output}").apply(image.with_array(array))
