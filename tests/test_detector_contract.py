"""The one detector contract, checked on every registered model at tiny settings (the real architectures).

Shapes, finite outputs, gradients to every parameter, determinism and neuron reset between calls, the
predict contract (any input sizes, boxes in original pixels, thresholds per call, mode restored), the shared
settings of ``create_model``, bad inputs refused with the zoo's errors, and the card's parameter count and
class names at full size (built on the meta device).
"""

import pytest
import torch

import snn_det_zoo as zoo
from snn_det_zoo.constants import SHAPE_CLASSES
from snn_det_zoo.errors import InvalidArgumentError, ZooError
from snn_det_zoo.nn import MODALITIES, Detector

MODELS = zoo.list_models()


def _batch(model: Detector, size=(64, 64), batch=2) -> torch.Tensor:
    h, w = size
    x = torch.rand(batch, model.in_chans, h, w, generator=torch.Generator().manual_seed(0))
    return x.unsqueeze(0).repeat(model.T, 1, 1, 1, 1) if model.modality == "events" else x


def _input(model: Detector, h: int, w: int, dtype=torch.float32) -> torch.Tensor:
    x = torch.rand(model.in_chans, h, w, generator=torch.Generator().manual_seed(h * w))
    if dtype == torch.uint8:
        x = (x * 255).to(torch.uint8)
    return x.unsqueeze(0).repeat(model.T, 1, 1, 1) if model.modality == "events" else x


def test_every_card_has_a_builder_and_every_builder_a_card():
    import snn_det_zoo.archs  # noqa: F401  (registers every family)
    from snn_det_zoo import _cards, registry

    assert set(_cards.variant_cards()) == set(registry._ENTRYPOINTS) == set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_attributes_follow_the_contract(name, tiny_model):
    model = tiny_model(name)
    assert isinstance(model, Detector)
    assert model.num_classes == len(SHAPE_CLASSES) and model.class_names == SHAPE_CLASSES
    assert isinstance(model.T, int) and model.T >= 1 and (model.D is None or model.D >= 1)
    assert model.in_chans == 3 and model.modality in MODALITIES
    assert model.strides and all(isinstance(s, int) for s in model.strides)
    assert (model.score_thresh, model.iou_thresh, model.max_detections) == (
        pytest.approx(model.score_thresh), pytest.approx(model.iou_thresh), model.max_detections)
    custom = tiny_model(name, score_thresh=0.25, iou_thresh=0.5, max_detections=7)
    assert (custom.score_thresh, custom.iou_thresh, custom.max_detections) == (0.25, 0.5, 7)


@pytest.mark.parametrize("name", MODELS)
def test_forward_is_finite_repeatable_and_resets_its_neurons(name, tiny_model):
    torch.manual_seed(0)
    model = tiny_model(name)
    x = _batch(model)
    # Running statistics of the batch itself, so that the freshly built network fires in eval mode: a neuron
    # state left over from the call in between would show in the second output.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 1.0
    with torch.no_grad():
        model.train()(x)
        model.eval()
        first = model(x)
        other = model(_batch(model, batch=2) * 0.5)  # a different input in between leaves no state behind
        second = model(x)
    assert isinstance(first, list) and first and all(torch.isfinite(t).all() for t in first)
    assert all(t.shape[0] == 2 for t in first)  # one output per image of the batch
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name, tiny_model):
    torch.manual_seed(0)
    model = tiny_model(name).train()
    outputs = model(_batch(model))
    sum((o.float() ** 2).mean() for o in outputs).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or
                                                                             not torch.isfinite(p.grad).all())]
    assert not missing, f"no finite gradient for {missing[:5]}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", MODELS)
def test_predict_maps_inputs_of_any_size_back_and_restores_the_mode(name, tiny_model):
    torch.manual_seed(0)
    model = tiny_model(name, score_thresh=0.0, max_detections=20).train()
    inputs = [_input(model, 50, 70), _input(model, 64, 64, torch.uint8), _input(model, 40, 100)]
    detections = model.predict(inputs)
    assert model.training  # the mode is restored
    assert len(detections) == 3
    for det, item in zip(detections, inputs, strict=True):
        h, w = item.shape[-2:]
        boxes, scores, labels = det["boxes"], det["scores"], det["labels"]
        assert boxes.shape[1:] == (4,) and len(boxes) == len(scores) == len(labels) <= 20
        assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= w).all()  # original pixels
        assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= h).all()
        assert labels.dtype == torch.int64 and ((labels >= 0) & (labels < model.num_classes)).all()
        assert (scores[:-1] >= scores[1:]).all()
    # Settings per call, without changing the model's.
    assert all(len(d["boxes"]) == 0 for d in model.predict(inputs, score_thresh=1.0))
    assert all(len(d["boxes"]) <= 1 for d in model.predict(inputs, max_detections=1))
    assert model.score_thresh == 0.0 and model.max_detections == 20
    # A batch tensor is a list of its items; equal inputs give equal detections.
    batch = _batch(model)
    as_list = list(batch.transpose(0, 1)) if model.modality == "events" else list(batch)
    for a, b in zip(model.predict(batch), model.predict(as_list), strict=True):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


@pytest.mark.parametrize("name", MODELS)
def test_bad_inputs_raise_the_zoos_errors(name, tiny_model):
    model = tiny_model(name)
    good = _batch(model)
    bad_inputs = {
        "integer tensor": good.to(torch.uint8),
        "wrong channels": good[..., :1, :, :],
        "not a stride multiple": good[..., :48, :],
        "not a tensor": good.tolist(),
    }
    if model.modality == "events":
        bad_inputs["static image"] = good[0]
    steps = good.unsqueeze(0) if good.dim() == 4 else good[:1]
    bad_inputs["wrong T"] = torch.cat([steps] * (model.T + 1))
    for what, x in bad_inputs.items():
        with pytest.raises(InvalidArgumentError):
            model(x)
        assert what  # (named for the failure message)
    with pytest.raises(InvalidArgumentError):
        model.predict([])
    with pytest.raises(InvalidArgumentError):
        model.predict([torch.full_like(_input(model, 32, 32), 3.0)])  # not an image in [0, 1]
    with pytest.raises(InvalidArgumentError):
        model.predict([_input(model, 32, 32)], score_thresh=1.5)
    for settings in ({"score_thresh": -0.1}, {"iou_thresh": 2.0}, {"max_detections": 0}, {"T": 0},
                     {"num_classes": 0}, {"modality": "audio"}, {"class_names": ["a", "b"]}):
        with pytest.raises(ZooError):
            tiny_model(name, **settings)


@pytest.mark.parametrize("name", MODELS)
def test_full_size_model_has_the_cards_parameter_count_and_class_names(name):
    info = zoo.model_info(name)
    with torch.device("meta"):
        model = zoo.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == info["num_params"]
    defaults = info["defaults"]
    assert model.num_classes == defaults["num_classes"] and len(model.class_names) == model.num_classes
    assert model.modality == defaults.get("modality", "image")
    if defaults.get("class_names") == "coco80":
        assert model.class_names[0] == "person" and model.class_names[-1] == "toothbrush"
