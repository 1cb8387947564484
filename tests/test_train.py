"""Training: the loop's outputs, resume, the recipes' pieces, synchronised BatchNorm and DDP on CPU."""

from __future__ import annotations

import csv
import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import snn_det_zoo as zoo
from snn_det_zoo.cli import main
from snn_det_zoo.errors import CheckpointFormatError, InvalidArgumentError, WeightsNotFoundError
from snn_det_zoo.nn.recipe import ULTRALYTICS_RECIPE, YOLOV5_RECIPE, TrainRecipe
from snn_det_zoo.nn.sync_batchnorm import synchronize_batchnorm
from snn_det_zoo.train import ModelEMA, TrainArgs, fitness, parameter_groups, train

TINY = dict(num_samples=4, val_samples=2, img_size=64, batch_size=2, progress=False)


def _args(tmp_path, name="run", **changes) -> TrainArgs:
    values = {"model": "spikeyolo_tiny", "epochs": 2, "out": str(tmp_path / name), **TINY,
              "recipe": {"warmup_epochs": 0.0, "nominal_batch": 2}, **changes}
    return TrainArgs(**values)


def _rows(folder) -> list[dict[str, str]]:
    with open(folder / "train.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_training_writes_one_row_per_epoch_weights_that_load_and_a_weights_only_state(tmp_path):
    out = train(_args(tmp_path))
    rows = _rows(out)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "loss", "box", "cls", "dfl", "lr", "map50", "map50_95", "seconds"]
    for row in rows:
        assert math.isfinite(float(row["loss"])) and float(row["loss"]) > 0
        assert 0 <= float(row["map50_95"]) <= float(row["map50"]) <= 1
        assert float(row["loss"]) == pytest.approx(sum(float(row[k]) for k in ("box", "cls", "dfl")), rel=1e-4)
    for name in ("last", "best"):
        model = zoo.create_model("spikeyolo_tiny", checkpoint_path=out / f"{name}.safetensors", img_size=64)
        assert model.num_classes == 5
    state = torch.load(out / "last_state.pt", weights_only=True)  # no pickled objects
    assert state["epoch"] == 1 and len(state["rows"]) == 2


def test_resume_continues_an_interrupted_run_to_the_same_weights(tmp_path, monkeypatch):
    whole = train(_args(tmp_path, "whole"))
    import snn_det_zoo.train as trainer

    real, calls = trainer._validate, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the machine goes away during epoch 2
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "_validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_args(tmp_path, "cut"))
    assert len(_rows(tmp_path / "cut")) == 1
    monkeypatch.setattr(trainer, "_validate", real)
    resumed = train(_args(tmp_path, "cut", resume=True))
    a = zoo.hub.load_state_dict_file(whole / "last.safetensors")
    b = zoo.hub.load_state_dict_file(resumed / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in _rows(whole)] == [r["loss"] for r in _rows(resumed)]


def test_bad_training_requests_say_what_is_wrong(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"last_state\.pt not found"):
        train(_args(tmp_path, resume=True))
    with pytest.raises(InvalidArgumentError, match="epochs must be a positive integer"):
        train(_args(tmp_path, epochs=0))
    with pytest.raises(InvalidArgumentError, match="unknown recipe settings"):
        train(_args(tmp_path, recipe={"lr": 0.1}))
    with pytest.raises(InvalidArgumentError, match="multiple of the model's stride"):
        train(_args(tmp_path, img_size=80))
    train(_args(tmp_path, "one", epochs=1))
    with pytest.raises(InvalidArgumentError, match=r"other settings \(\['seed'\]\)"):
        train(_args(tmp_path, "one", seed=3, resume=True))
    (tmp_path / "one" / "last_state.pt").write_bytes(b"not a state")
    with pytest.raises(CheckpointFormatError, match="not a readable training state"):
        train(_args(tmp_path, "one", resume=True))


def test_the_train_command_trains_an_event_model(tmp_path, capsys):
    argv = ["train", "ems_yolo_res10_tiny", "--dataset", "synthetic-events", "--epochs", "1", "--num-samples", "2",
            "--val-samples", "2", "--batch-size", "2", "--img-size", "64", "--device", "cpu", "--quiet",
            "--model-arg", "modality=events", "--recipe", "warmup_epochs=0", "--recipe", "nominal_batch=2",
            "--out", str(tmp_path / "ev")]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    assert list(_rows(tmp_path / "ev")[0])[:5] == ["epoch", "loss", "box", "obj", "cls"]
    assert main([*argv[:-2], "--recipe", "nonsense"]) == 2
    assert "--recipe expects KEY=VALUE" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- recipe pieces


def test_recipes_are_the_authors_settings():
    assert (ULTRALYTICS_RECIPE.lr0, ULTRALYTICS_RECIPE.lrf, ULTRALYTICS_RECIPE.warmup_epochs) == (0.01, 0.004, 10.0)
    assert ULTRALYTICS_RECIPE.max_grad_norm == 10.0 and ULTRALYTICS_RECIPE.schedule == "linear"
    assert (YOLOV5_RECIPE.lrf, YOLOV5_RECIPE.warmup_min_iters, YOLOV5_RECIPE.max_grad_norm) == (0.1, 1000, None)
    linear, cosine = ULTRALYTICS_RECIPE.lr_factor(300), YOLOV5_RECIPE.lr_factor(300)
    assert (linear(0), linear(300)) == pytest.approx((1.0, 0.004))
    assert (cosine(0), cosine(150), cosine(300)) == pytest.approx((1.0, 0.55, 0.1))
    assert ULTRALYTICS_RECIPE.warmup_iters(5) == 100 and YOLOV5_RECIPE.warmup_iters(1000) == 3000
    assert YOLOV5_RECIPE.for_modality("events").fliplr == 0.0
    with pytest.raises(InvalidArgumentError, match="schedule"):
        TrainRecipe(schedule="step")


def test_parameter_groups_put_biases_and_norm_weights_out_of_weight_decay():
    model = zoo.create_model("ems_yolo_res10_tiny", img_size=64)
    bias, weight, norm = parameter_groups(model, 5e-4)
    assert (bias["weight_decay"], weight["weight_decay"], norm["weight_decay"]) == (0.0, 5e-4, 0.0)
    norms = {id(m.weight) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert {id(p) for p in norm["params"]} == norms  # tdBN included
    assert all(p.dim() == 1 for p in bias["params"]) and all(p.dim() == 4 for p in weight["params"])
    counted = sum(len(g["params"]) for g in (bias, weight, norm))
    assert counted == len(list(model.parameters()))


def test_ema_ramps_its_decay_and_averages_batchnorm_statistics():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(2.0)
    before = ema.ema[0].weight.clone()
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1))
    torch.testing.assert_close(ema.ema[0].weight, d * before + (1 - d) * model[0].weight)
    torch.testing.assert_close(ema.ema[1].running_mean, torch.full((2,), (1 - d) * 2.0))
    assert ema.ema[1].num_batches_tracked == 0  # integers are not averaged
    assert fitness(0.5, 0.3) == pytest.approx(0.32)


# ----------------------------------------------------------------------------- distributed, on CPU


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sync_bn_worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist
    from spikingjelly.activation_based import layer

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    x = torch.randn(2 * world, 3, 4, 5, 5, dtype=torch.float64)  # [T*B... ] as tdBN sees [T, B, C, H, W]
    plain = nn.BatchNorm2d(4).double()
    td = layer.ThresholdDependentBatchNorm2d(alpha=1.0, v_th=0.5, num_features=4).double()
    synchronize_batchnorm(nn.Sequential(plain, td))
    shard = x[:, rank::world].clone().requires_grad_()
    out_plain = plain(shard[0])
    out_td = td(shard)
    (out_plain.square().sum() + (out_td * torch.arange(4.0, dtype=torch.float64).view(1, 1, 4, 1, 1)).sum()
     ).backward()
    # NumPy arrays travel by value (tensors would travel as shared memory the exiting process takes away).
    queue.put((rank, *(t.detach().numpy() for t in (out_plain, out_td, shard.grad, plain.running_var,
                                                     td.running_mean))))
    dist.destroy_process_group()


@pytest.mark.slow
def test_synchronised_batchnorm_over_two_processes_equals_one_process_over_the_whole_batch():
    world = 2
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.start_processes(_sync_bn_worker, args=(world, _free_port(), queue), nprocs=world, start_method="spawn")
    reports = sorted((queue.get(timeout=120) for _ in range(world)), key=lambda r: r[0])
    torch.manual_seed(0)
    x = torch.randn(2 * world, 3, 4, 5, 5, dtype=torch.float64).requires_grad_()
    plain = nn.BatchNorm2d(4).double()
    from spikingjelly.activation_based import layer

    td = layer.ThresholdDependentBatchNorm2d(alpha=1.0, v_th=0.5, num_features=4).double()
    out_plain, out_td = plain(x[0]), td(x)
    (out_plain.square().sum() + (out_td * torch.arange(4.0, dtype=torch.float64).view(1, 1, 4, 1, 1)).sum()
     ).backward()
    for rank, *arrays in reports:
        shard_plain, shard_td, grad, running_var, running_mean = (torch.from_numpy(a) for a in arrays)
        torch.testing.assert_close(shard_plain, out_plain[rank::world].detach())
        torch.testing.assert_close(shard_td, out_td[:, rank::world].detach())
        torch.testing.assert_close(grad, x.grad[:, rank::world])
        torch.testing.assert_close(running_var, plain.running_var)
        torch.testing.assert_close(running_mean, td.running_mean)


class _Duplicated(torch.utils.data.Dataset):
    """Two synthetic images, each twice, placed so that each rank's shard of the shuffled order holds one of
    each: every rank sees the batch statistics and loss normalisation of the whole batch."""

    def __init__(self, seed: int) -> None:
        from snn_det_zoo.data.synthetic import SyntheticShapes

        base = SyntheticShapes(2, image_size=64, seed=seed)
        order = torch.randperm(4, generator=torch.Generator().manual_seed(seed)).tolist()  # the epoch-0 shuffle
        self.items = [None] * 4
        for position, index in enumerate(order):
            self.items[index] = base[position // 2]  # positions 0, 1 -> a; 2, 3 -> b: ranks get (a, b)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        return self.items[index]


def _patch_tracks(monkeypatch_target, seed: int) -> None:
    import snn_det_zoo.train as trainer

    real = trainer._tracks

    def tracks(args, model, img_size):
        train_track, val_track = real(args, model, img_size)
        train_track.data = _Duplicated(seed)
        return train_track, val_track

    monkeypatch_target.setattr(trainer, "_tracks", tracks)


# YOLOv5's loss averages over targets and cells, so a rank that holds one copy of each image normalises as one
# process holding both copies; the v8 loss divides by max(sum of target scores, 1), which differs between the
# two while an untrained model's scores sum below 1 (as in the authors' DDP runs).
_DDP_MODEL = "ems_yolo_res10_tiny"


def _ddp_train_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    patch = pytest.MonkeyPatch()
    _patch_tracks(patch, seed=0)
    train(TrainArgs(model=_DDP_MODEL, epochs=1, batch_size=4, num_samples=4, val_samples=2, img_size=64,
                    out=out, progress=False, recipe={"warmup_epochs": 0.0, "nominal_batch": 4, "fliplr": 0.0}))


@pytest.mark.slow
def test_two_cpu_processes_train_as_one_process_with_the_same_global_batch(tmp_path, monkeypatch):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.start_processes(_ddp_train_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2,
                       start_method="spawn")
    _patch_tracks(monkeypatch, seed=0)
    train(TrainArgs(model=_DDP_MODEL, epochs=1, batch_size=4, num_samples=4, val_samples=2, img_size=64,
                    out=str(tmp_path / "one"), progress=False,
                    recipe={"warmup_epochs": 0.0, "nominal_batch": 4, "fliplr": 0.0}))
    (ddp,), (one,) = _rows(tmp_path / "ddp"), _rows(tmp_path / "one")
    assert list(ddp) == list(one)
    for key in ("loss", "box", "obj", "cls"):
        assert float(ddp[key]) == pytest.approx(float(one[key]), rel=1e-4), key
    a = torch.load(tmp_path / "ddp" / "last_state.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "one" / "last_state.pt", weights_only=True)["model"]
    moved = [k for k in b if b[k].is_floating_point() and not torch.equal(b[k], a[k])]
    assert moved  # the step changed the weights
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
