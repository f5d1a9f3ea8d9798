"""`medpipes docker run`: the docker command line it builds, and one-line errors for bad paths (no docker needed)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from medpipes.core.cli.main import main as medpipes_main
from medpipes.core.containers.docker_run import image_name, plan_docker_run
from medpipes.core.errors import InputError


def test_folder_input_is_mounted_read_only_and_runs_as_the_given_user(tmp_path: Path) -> None:
    case = tmp_path / "t1_dicom"
    case.mkdir()
    plan = plan_docker_run("brain-extraction", case, tmp_path / "out", ["--n4"], image="img:1", user=(1234, 99), env={})
    argv = list(plan.argv)
    assert argv[:5] == ["docker", "run", "--rm", "--user", "1234:99"]
    assert f"type=bind,source={case},target=/input,readonly" in argv
    assert f"type=bind,source={tmp_path / 'out'},target=/output" in argv
    assert "type=volume,source=medpipes-cache,target=/cache" in argv
    assert argv[-2:] == ["img:1", "--n4"]
    assert "--gpus" not in argv and "--network" not in argv


def test_file_input_is_mounted_under_input_and_named_after_the_image(tmp_path: Path) -> None:
    image_file = tmp_path / "t1.nii.gz"
    image_file.write_bytes(b"x")
    plan = plan_docker_run("brain_extraction", image_file, tmp_path / "out", image="img:1", gpus=True, user=(1, 2), env={})
    argv = list(plan.argv)
    assert f"type=bind,source={image_file},target=/input/t1.nii.gz,readonly" in argv
    assert argv[-2:] == ["img:1", "t1.nii.gz"]
    assert argv[argv.index("--gpus") + 1] == "all"


def test_default_image_is_the_pipeline_at_this_version_and_host_proxy_settings_pass_by_name(tmp_path: Path) -> None:
    from importlib.metadata import version

    env = {"HTTPS_PROXY": "http://secret@proxy:3128", "MEDPIPES_MODEL_MIRRORS": "http://mirror/m"}
    plan = plan_docker_run("brain-extraction", tmp_path, tmp_path.parent / "out-x", user=(0, 0), env=env)
    assert plan.image == image_name("brain_extraction", version("medpipes")) == f"medpipes/brain-extraction:{version('medpipes')}"
    line = plan.shell_line()
    assert "--env HTTPS_PROXY" in line and "--env MEDPIPES_MODEL_MIRRORS" in line and "secret" not in line


def test_paths_with_commas_are_quoted_for_docker_mount(tmp_path: Path) -> None:
    case = tmp_path / "a,b"
    case.mkdir()
    plan = plan_docker_run("brain-extraction", case, tmp_path / "out", image="img", user=(0, 0), env={})
    assert f'type=bind,"source={case}",target=/input,readonly' in plan.argv


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: ("brain-extraction", t / "missing", t / "out"), "input not found"),
        (lambda t: ("no-such-pipeline", t, t / "out"), "unknown pipeline 'no-such-pipeline'"),
        (lambda t: ("brain-extraction", t, t / "sub" / "out"), "lies inside the input"),
    ],
)
def test_bad_paths_raise_one_line_input_errors(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(InputError, match=message):
        plan_docker_run(*make(tmp_path), image="img", user=(0, 0), env={})


def test_output_that_is_a_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    out.write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        plan_docker_run("brain-extraction", tmp_path, out, image="img", user=(0, 0), env={})


def test_cli_dry_run_prints_the_docker_line_and_runs_nothing(tmp_path: Path, capsys) -> None:
    case = tmp_path / "case"
    case.mkdir()
    out = tmp_path / "out"
    code = medpipes_main(["docker", "run", "brain-extraction", str(case), str(out), "--dry-run", "--no-gpus",
                          "--image", "img:2", "--network", "host", "--device", "cpu"])  # fmt: skip
    assert code == 0
    argv = shlex.split(capsys.readouterr().out.strip())
    assert argv[argv.index("--network") + 1] == "host"
    assert argv[-3:] == ["img:2", "--device", "cpu"]
    assert not out.exists()  # a dry run creates nothing


def test_cli_missing_input_is_one_line_and_exit_code_2(tmp_path: Path, capsys) -> None:
    code = medpipes_main(["docker", "run", "brain-extraction", str(tmp_path / "nope"), str(tmp_path / "out"), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and err.startswith("error:") and "input not found" in err


def test_cli_without_a_docker_client_says_how_to_get_one(tmp_path: Path, capsys) -> None:
    (tmp_path / "case").mkdir()
    code = medpipes_main(["docker", "run", "brain-extraction", str(tmp_path / "case"), str(tmp_path / "out"), "--no-gpus",
                          "--docker", str(tmp_path / "no-docker")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("error:") and "docker client not found" in err[-1]
