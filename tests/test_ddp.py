"""DistributedDataParallel on the CPU (gloo): 2 processes with batch B follow the loss curve of 1 process with 2B.

The two workers are started the way torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT on 127.0.0.1, OMP_NUM_THREADS=1) and run `medpipes train`; env:// initialisation does the
rest. Instance norm (per sample), equal shards and one thread per process make the two runs the same
arithmetic up to float summation order: tolerance 1e-4 relative on losses, 1e-5 absolute on weights (measured: 2e-7).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from medpipes.core.cli.train import run_training
from medpipes.core.models.engine import read_metrics_csv
from safetensors.torch import load_file

_spec = importlib.util.spec_from_file_location("medpipes_tests_train_cases", Path(__file__).parent / "train_cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)

WORKER = "import sys\nfrom medpipes.core.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_two_processes(script: Path, args: list[str], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:  # a rank that failed leaves its peer waiting: end both
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def test_two_gloo_processes_match_one_process_with_the_doubled_batch(tmp_path):
    root = tmp_path / "data"
    cases.write_sphere_cases(root, 10, size=16, seed=5)
    val = ["case08", "case09"]
    sections = {
        "training": {"epochs": 3, "seed": 11},
        "scheduler": {"name": "cosine"},
        "optimizer": {"name": "adamw", "lr": 0.01},
    }
    ddp_config = cases.sphere_config(root, tmp_path / "ddp", val, **sections)
    ddp_config["training"]["batch_size"] = 2
    one_config = cases.sphere_config(root, tmp_path / "one", val, **sections)
    one_config["training"]["batch_size"] = 4
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    results = run_two_processes(script, ["train", str(cases.write_config(tmp_path / "ddp.yaml", ddp_config))], tmp_path)
    for rank, result in enumerate(results):
        assert result.returncode == 0, f"rank {rank}: {result.stderr[-2000:]}"
    assert "trained:" in results[0].stdout and "trained:" not in results[1].stdout  # only rank 0 reports and writes

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = run_training(cases.write_config(tmp_path / "one.yaml", one_config))
    finally:
        torch.set_num_threads(before)

    ddp_rows = read_metrics_csv(tmp_path / "ddp" / "metrics.csv")
    assert [int(r["epoch"]) for r in ddp_rows] == [1, 2, 3]
    ddp_loss = [r["train_loss"] for r in ddp_rows]
    one_loss = [r["train_loss"] for r in single.history]
    assert ddp_loss == pytest.approx(one_loss, rel=1e-4)
    assert ddp_loss[-1] < ddp_loss[0]  # a real curve, not a flat line
    assert [r["val_loss"] for r in ddp_rows] == pytest.approx([r["val_loss"] for r in single.history], rel=1e-4)
    a = load_file(str(tmp_path / "ddp" / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "one" / "checkpoints" / "last.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=0) for k in a)
    assert not list((tmp_path / "ddp").glob("**/*.tmp*"))  # rank 1 wrote nothing half-done beside rank 0
