"""Checkpoints (worldmodel/training/checkpoint.py) and device / precision / seeding helpers
(worldmodel/device.py)."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import worldmodel.device as device_mod
from worldmodel.device import (
    autocast,
    autocast_dtype,
    cpu_has_native_bf16,
    resolve_device,
    seed_everything,
)
from worldmodel.training.checkpoint import (
    CheckpointError,
    check_config_compatible,
    cleanup_stale_tmp,
    load_checkpoint,
    save_checkpoint,
)


@dataclasses.dataclass
class _ModelCfg:
    K: int = 1
    M: int = 2
    widths: tuple[int, ...] = (64, 128)


@dataclasses.dataclass
class _Cfg:
    model: _ModelCfg = dataclasses.field(default_factory=_ModelCfg)
    lr: float = 3e-4
    name: str = "svg"


def _payload() -> dict:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LSTM(4, 5, batch_first=True))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    out, _ = net(torch.randn(2, 6, 3))
    out.sum().backward()
    opt.step()
    return {
        "model": net.state_dict(),
        "opt": opt.state_dict(),
        "step": 12,
        "best": float("inf"),
        "note": "hello",
        "config": dataclasses.asdict(_Cfg()),
        "history": [1.0, 2.5, None, True],
        "rng": torch.get_rng_state(),
        "py_rng": random.getstate(),
    }


def _tmp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.tmp"))


# --------------------------------------------------------------------------- save / load
def test_round_trip_restores_model_and_optimizer(tmp_path):
    payload = _payload()
    path = save_checkpoint(tmp_path / "run" / "nested" / "last.ckpt", payload)
    assert path == tmp_path / "run" / "nested" / "last.ckpt" and path.is_file()
    assert _tmp_files(path.parent) == []
    loaded = load_checkpoint(path)
    assert loaded.keys() == payload.keys()
    for k, v in payload["model"].items():
        assert torch.equal(loaded["model"][k], v)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LSTM(4, 5, batch_first=True))
    net.load_state_dict(loaded["model"])
    opt = torch.optim.Adam(net.parameters())
    opt.load_state_dict(loaded["opt"])
    assert opt.state_dict()["state"][0]["step"] == payload["opt"]["state"][0]["step"]
    assert loaded["config"] == dataclasses.asdict(_Cfg())
    assert loaded["step"] == 12 and loaded["best"] == float("inf") and loaded["note"] == "hello"
    assert loaded["history"] == [1.0, 2.5, None, True]
    assert torch.equal(loaded["rng"], payload["rng"]) and loaded["py_rng"] == payload["py_rng"]


def test_every_accepted_type_loads_with_weights_only(tmp_path):
    """The payload check and torch's weights_only unpickler agree on what is allowed."""
    payload = {
        "str": "s",
        "bytes": b"b",
        "int": 1,
        "float": 0.5,
        "bool": False,
        "complex": 1j,
        "none": None,
        "size": torch.Size([2, 3]),
        "dtype": torch.bfloat16,
        "device": torch.device("cpu"),
        "param": torch.nn.Parameter(torch.ones(2)),
        "ordered": collections.OrderedDict(a=1),
        "int_keys": {0: {"x": torch.zeros(1)}},
        "tuple": (1, "a"),
        "set": {1, 2},
    }
    loaded = load_checkpoint(save_checkpoint(tmp_path / "all.ckpt", payload))
    assert loaded["size"] == torch.Size([2, 3]) and loaded["dtype"] == torch.bfloat16
    assert loaded["set"] == {1, 2} and loaded["int_keys"][0]["x"].shape == (1,)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.float64(1.0), r"payload\['config'\]\['lr'\] is a numpy.float64"),
        (np.zeros(3), r"numpy.ndarray.*torch.from_numpy"),
        (_Cfg(), r"_Cfg.*dataclasses.asdict"),
        (torch.nn.Linear(2, 2), r"Linear.*state_dict"),
    ],
)
def test_save_refuses_what_weights_only_loading_would_refuse(tmp_path, value, match):
    path = tmp_path / "x.ckpt"
    with pytest.raises(CheckpointError, match=match):
        save_checkpoint(path, {"config": {"lr": value}})
    assert not path.exists() and _tmp_files(tmp_path) == []


def test_save_replaces_an_existing_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, {"step": 1})
    save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path)["step"] == 2
    assert _tmp_files(tmp_path) == []


def test_saved_file_mode_follows_the_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m.ckpt", {"a": 1})
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"),
    ],
)
def test_failed_write_keeps_the_previous_checkpoint_and_removes_the_tmp_file(
    tmp_path, monkeypatch, error
):
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, {"step": 1, "w": torch.arange(10)})
    before = path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial bytes of a new checkpoint")
        raise error

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(CheckpointError, match=r"failed to write checkpoint .*last\.ckpt.*intact"):
        save_checkpoint(path, {"step": 2, "w": torch.arange(10)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert _tmp_files(tmp_path) == []


def test_interrupted_write_removes_the_tmp_file_and_propagates(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, {"step": 1})

    def interrupted(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1 and _tmp_files(tmp_path) == []


def test_unwritable_directory_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CheckpointError, match="cannot create checkpoint directory"):
        save_checkpoint(blocker / "sub" / "last.ckpt", {"a": 1})

    real_open = os.open

    def denied(path, flags, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(CheckpointError, match=r"is not writable.*Permission denied"):
        save_checkpoint(tmp_path / "last.ckpt", {"a": 1})


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_is_a_clear_error(tmp_path):
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        with pytest.raises(CheckpointError, match="not writable"):
            save_checkpoint(directory / "last.ckpt", {"a": 1})
    finally:
        directory.chmod(0o700)


def _touch_marker(path: str) -> None:
    Path(path).write_text("code ran")


class _Malicious:
    """Unpickling this calls _touch_marker: stands in for arbitrary code in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_touch_marker, (str(self.marker),))


def test_checkpoint_with_pickled_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.ckpt"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Malicious(marker)}, path)
    with pytest.raises(
        CheckpointError, match=r"refusing to load checkpoint .*evil\.ckpt.*_touch_marker"
    ):
        load_checkpoint(path)
    assert not marker.exists()
    # the file is really dangerous: plain unpickling runs the code
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
    path = save_checkpoint(tmp_path / "last.ckpt", {"w": torch.randn(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.ckpt is truncated or corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty, truncated or not a PyTorch checkpoint"):
        load_checkpoint(path)
    path.write_bytes(os.urandom(500))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    torch.save([1, 2], path)
    with pytest.raises(CheckpointError, match="holds a list, expected a dict"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- config compatibility
def test_config_compatibility_lists_every_differing_key(tmp_path):
    saved = dataclasses.asdict(_Cfg(model=_ModelCfg(M=2, K=4)))
    current = dataclasses.asdict(_Cfg(model=_ModelCfg(M=1, K=4), lr=1.0))
    keys = ["model.M", "model.K", "model.widths", "name"]
    with pytest.raises(CheckpointError) as info:
        check_config_compatible(saved, current, keys, source=tmp_path / "last.ckpt")
    message = str(info.value)
    assert "model.M: saved 2, current 1" in message and "last.ckpt" in message
    assert "model.K" not in message and "lr" not in message  # equal / not checked
    check_config_compatible(saved, current, ["model.K", "lr"][:1])  # no error


def test_config_compatibility_missing_keys_and_tuple_vs_list():
    saved = {"model": {"widths": (64, 128)}}
    check_config_compatible(saved, {"model": {"widths": [64, 128]}}, ["model.widths"])
    with pytest.raises(CheckpointError, match=r"model.M: saved <missing>, current 3"):
        check_config_compatible(saved, {"model": {"widths": [64, 128], "M": 3}}, ["model.M"])
    check_config_compatible({}, {}, ["absent.everywhere"])


def test_cleanup_stale_tmp_removes_only_dot_tmp_files(tmp_path):
    stale = [tmp_path / ".last.ckpt.1a2b.tmp", tmp_path / ".episode-000001-5.npz.tmp"]
    for p in stale:
        p.write_bytes(b"x")
    keep = [tmp_path / "keep.tmp", tmp_path / ".hidden", tmp_path / "last.ckpt"]
    for p in keep:
        p.write_bytes(b"x")
    (tmp_path / ".dir.tmp").mkdir()
    assert cleanup_stale_tmp(tmp_path) == sorted(stale)
    assert all(not p.exists() for p in stale) and all(p.exists() for p in keep)
    assert (tmp_path / ".dir.tmp").is_dir()
    assert cleanup_stale_tmp(tmp_path / "missing") == []


# --------------------------------------------------------------------------- worldmodel/device.py
def test_resolve_device_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device() == resolve_device("auto")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_resolve_device_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match=r"CUDA is not available.*device=cpu or device=auto"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:1")


@pytest.mark.parametrize(("name", "match"), [("gpu0", "unknown device"), ("meta", "unsupported")])
def test_resolve_device_rejects_unknown_names(name, match):
    with pytest.raises(ValueError, match=match):
        resolve_device(name)


def test_autocast_dtype_explicit_precisions():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") == torch.bfloat16
    assert autocast_dtype(cpu, "fp16") == torch.float16
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        autocast_dtype(cpu, "fp8")


def test_autocast_dtype_auto_follows_cpu_bf16_support(monkeypatch):
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "auto") == (torch.bfloat16 if cpu_has_native_bf16() else None)
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    assert autocast_dtype(cpu, "auto") == torch.bfloat16
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    assert autocast_dtype(cpu, "auto") is None


def test_cpu_has_native_bf16_checks_onednn_and_the_instruction_set(monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert cpu_has_native_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16() is True
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")  # a torch without the helper
    assert cpu_has_native_bf16() is False
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16() is False


def test_autocast_context():
    cpu = torch.device("cpu")
    a = torch.randn(4, 4)
    with autocast(cpu, torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
    with autocast(cpu, None) as ctx:
        assert (a @ a).dtype == torch.float32
    assert ctx is None
    assert isinstance(autocast(cpu, None), contextlib.nullcontext)


def test_seed_everything_makes_every_rng_reproducible():
    def draw(seed):
        g = seed_everything(seed)
        return (
            random.random(),
            np.random.rand(),
            torch.rand(1).item(),
            torch.rand(1, generator=g).item(),
        )

    first, again, other = draw(5), draw(5), draw(6)
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))
    assert seed_everything(1, device="cpu").device.type == "cpu"
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="non-negative integer"):
            seed_everything(bad)


def test_loading_a_model_for_planning_does_not_import_the_trainer(tmp_path, model_config):
    """examples/own_planner.py (a checkpoint loaded and planned with) runs without importing
    ``worldmodel.training.train`` (nor the anti-blur code)."""
    import subprocess
    import sys

    from worldmodel.model.svg import WorldModel
    from worldmodel.training import train

    model = WorldModel(model_config(), 32, 2)
    ckpt = train.Trainer(model, train.TrainConfig(), train.ObjectiveConfig(), "cpu").save(
        tmp_path / "tiny.pt"
    )
    example = Path(__file__).resolve().parents[1] / "examples" / "own_planner.py"
    code = (
        "import runpy, sys\n"
        f"main = runpy.run_path({str(example)!r}, run_name='own_planner')['main']\n"
        f"main([{str(ckpt)!r}, '--env', 'stub', '--frames', '2'])\n"
        "trainer = ('worldmodel.training.train', 'worldmodel.antiblur')\n"
        "print(sorted(m for m in sys.modules if m.startswith(trainer)))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert "planned action" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"
