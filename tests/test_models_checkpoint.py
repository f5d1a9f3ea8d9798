"""Checkpoints (safetensors + JSON, never pickle), TorchScript and ONNX export, import of external TorchScript."""

from __future__ import annotations

import json

import pytest
import torch

from medpipes.core.errors import InputError
from medpipes.core.models import (
    FCN,
    UNet,
    VGGNet,
    export_onnx,
    export_torchscript,
    import_torchscript,
    load_checkpoint,
    save_checkpoint,
)
from medpipes.core.models.checkpoint import config_path
from medpipes.core.store.formats import detect_weights_format


def _trained_unet() -> UNet:
    """A small U-Net with batch norm whose running statistics have moved (so buffers must round-trip too)."""
    torch.manual_seed(0)
    net = UNet(spatial_dims=3, in_channels=2, out_channels=3, depth=2, base_filters=4, norm="batch", block="residual")
    net.train()
    with torch.no_grad():
        net(torch.randn(2, 2, 8, 8, 8) * 3 + 1)
    return net.eval()


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    net = _trained_unet()
    path = save_checkpoint(net, tmp_path / "unet.safetensors", extra={"epoch": 7})
    assert detect_weights_format(path) == "safetensors"
    document = json.loads(config_path(path).read_text())
    assert document["network"]["architecture"] == "unet" and document["extra"] == {"epoch": 7}
    loaded = load_checkpoint(path)
    x = torch.randn(1, 2, 8, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert not loaded.training


@pytest.mark.parametrize(
    "net", [FCN(spatial_dims=2, depth=2, base_filters=4), VGGNet(spatial_dims=2, stages=2, base_filters=4, hidden=4)]
)
def test_fcn_and_vgg_checkpoints_round_trip(tmp_path, net):
    net = net.eval()
    loaded = load_checkpoint(save_checkpoint(net, tmp_path / "net.safetensors"))
    x = torch.randn(2, 1, 12, 10)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_a_pickle_checkpoint_is_refused_with_the_conversion_fix(tmp_path):
    net = _trained_unet()
    path = tmp_path / "unet.pth"
    torch.save(net.state_dict(), path)
    with pytest.raises(InputError, match=r"unet.pth: is a pickle file.*refused.*safetensors.torch.save_file"):
        load_checkpoint(path)
    with pytest.raises(InputError, match=r"is a pickle file"):
        import_torchscript(path, in_channels=2, out_channels=3)


def test_missing_json_config_and_mismatched_weights_are_reported(tmp_path):
    path = save_checkpoint(_trained_unet(), tmp_path / "a.safetensors")
    other = save_checkpoint(UNet(depth=2, base_filters=8), tmp_path / "b.safetensors")
    config_path(path).write_text(config_path(other).read_text())
    with pytest.raises(InputError, match="belong to different models"):
        load_checkpoint(path)
    config_path(path).unlink()
    with pytest.raises(InputError, match=r"a.json: the checkpoint's JSON config is missing"):
        load_checkpoint(path)


def test_a_config_with_an_unknown_key_names_the_file_and_key(tmp_path):
    path = save_checkpoint(UNet(depth=2, base_filters=4), tmp_path / "u.safetensors")
    document = json.loads(config_path(path).read_text())
    document["network"]["levels"] = 3
    config_path(path).write_text(json.dumps(document))
    with pytest.raises(InputError, match=r"u.json: network: unknown key 'levels'; valid keys are"):
        load_checkpoint(path)


def test_only_medpipes_networks_are_saved_as_checkpoints(tmp_path):
    with pytest.raises(InputError, match="needs a medpipes network"):
        save_checkpoint(torch.nn.Conv3d(1, 1, 1), tmp_path / "c.safetensors")
    with pytest.raises(InputError, match="NAME.safetensors"):
        save_checkpoint(UNet(depth=1, base_filters=2), tmp_path / "c.pt")


def test_torchscript_export_imports_back_and_runs_like_the_eager_network(tmp_path):
    net = _trained_unet().train()
    path = export_torchscript(net, tmp_path / "unet.ts", (1, 2, 8, 8, 8))
    assert net.training  # the caller's mode is restored
    net.eval()
    assert detect_weights_format(path) == "torchscript"
    imported = import_torchscript(path, in_channels=2, out_channels=3, spatial_dims=3, size_divisor=2)
    x = torch.randn(1, 2, 8, 8, 8)
    with torch.no_grad():
        assert torch.allclose(imported(x), net(x), atol=1e-4)
    with pytest.raises(InputError, match=r"data has 1 channel\(s\).*expects 2 input channel\(s\)"):
        imported(torch.randn(1, 1, 8, 8, 8))


def test_imported_model_with_a_wrong_out_channels_declaration_is_reported(tmp_path):
    path = export_torchscript(UNet(depth=1, base_filters=2, out_channels=2), tmp_path / "m.ts", (1, 1, 4, 4, 4))
    imported = import_torchscript(path, in_channels=1, out_channels=5)
    with pytest.raises(InputError, match=r"returned 2 channel\(s\), but out_channels=5"):
        imported(torch.randn(1, 1, 4, 4, 4))


def test_a_safetensors_file_is_not_imported_as_torchscript(tmp_path):
    path = save_checkpoint(UNet(depth=1, base_filters=2), tmp_path / "u.safetensors")
    with pytest.raises(InputError, match="is safetensors, not a TorchScript archive"):
        import_torchscript(path, in_channels=1, out_channels=2)


@pytest.mark.filterwarnings("ignore")  # the exporter's own deprecation notes
def test_onnx_export_passes_the_checker_and_matches_eager_outputs(tmp_path):
    import onnx
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(1)
    net = UNet(spatial_dims=3, in_channels=1, out_channels=2, depth=2, base_filters=4, block="se").eval()
    path = export_onnx(net, tmp_path / "unet.onnx", (1, 1, 8, 8, 8))
    onnx.checker.check_model(str(path), full_check=True)
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        eager = net(x).numpy()
    session = ReferenceEvaluator(str(path))  # onnx's own runtime; onnxruntime is not a dependency
    out = session.run(None, {session.input_names[0]: x.numpy()})[0]
    assert abs(out - eager).max() < 1e-4
    try:
        import onnxruntime
    except ImportError:
        return
    ort = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = ort.run(None, {ort.get_inputs()[0].name: x.numpy()})[0]
    assert abs(out - eager).max() < 1e-4
