"""Device choice: auto picks CUDA when present; impossible requests fail with the options."""

from __future__ import annotations

import pytest
import torch

from medpipes.core.errors import InputError
from medpipes.core.models import resolve_device


def test_auto_picks_cuda_when_present_and_the_cpu_otherwise(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


def test_cuda_index_must_exist(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("CUDA") == torch.device("cuda", 0)
    with pytest.raises(InputError, match=r"has 2 CUDA device\(s\) \(cuda:0..cuda:1\)"):
        resolve_device("cuda:2")


def test_cuda_without_cuda_and_unknown_names_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(InputError, match=r"device = 'gpu' is not valid; choose one of auto, cpu, cuda, cuda:N"):
        resolve_device("gpu")
    assert resolve_device("cpu") == torch.device("cpu")
