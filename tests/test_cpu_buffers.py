"""The cache of the fused CPU loops' output buffers: reuse only once every tensor sharing a buffer is gone."""

import gc
import threading

import pytest
import torch

from snn_det_zoo.errors import InvalidArgumentError
from snn_det_zoo.neurons import _cpu_buffers as buffers
from snn_det_zoo.neurons import cpu_buffer_cache_info, empty_cpu_buffer_cache

BIG = (3, 1 << 20)  # 12 MiB of float32: above the size the cache handles


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.delenv("SNN_DET_ZOO_CPU_BUFFER_CACHE_MB", raising=False)
    empty_cpu_buffer_cache()
    yield
    empty_cpu_buffer_cache()


def test_a_freed_buffer_is_lent_again():
    t = buffers.empty(BIG, torch.float32)
    assert t.shape == BIG and t.dtype == torch.float32 and t.is_contiguous()
    address = t.data_ptr()
    del t
    assert cpu_buffer_cache_info()["idle_buffers"] == 1
    again = buffers.empty(BIG, torch.float32)
    assert again.data_ptr() == address
    assert cpu_buffer_cache_info()["lent_buffers"] == 1


HOLDERS = {  # what can keep a tensor's memory alive after the tensor itself is gone
    "view": lambda t: t[1:],
    "numpy": lambda t: t.numpy(),
    "storage": lambda t: t.untyped_storage(),
    "flattened": lambda t: t.flatten().view(torch.int32),
}


@pytest.mark.parametrize("keep", sorted(HOLDERS))
def test_a_buffer_shared_by_a_live_view_is_never_lent(keep):
    t = buffers.empty(BIG, torch.float32)
    t.fill_(1.0)
    holder = HOLDERS[keep](t)
    del t
    gc.collect()
    other = buffers.empty(BIG, torch.float32)
    other.fill_(2.0)
    if keep == "storage":
        assert torch.empty(0).set_(holder).eq(1.0).all()
    else:
        assert torch.as_tensor(holder).view(torch.float32).eq(1.0).all()
    del holder, other
    assert cpu_buffer_cache_info()["idle_buffers"] == 2


def test_other_sizes_and_dtypes_get_their_own_bytes():
    t = buffers.empty(BIG, torch.float32)
    address = t.data_ptr()
    del t
    half = buffers.empty(BIG, torch.bfloat16)  # half the bytes: not the idle buffer
    assert half.data_ptr() != address and half.dtype == torch.bfloat16
    same_bytes = buffers.empty((BIG[0] * 2, BIG[1]), torch.bfloat16)
    assert same_bytes.data_ptr() == address  # the same byte size, another dtype and shape


def test_small_tensors_are_plain_torch_empty():
    small = buffers.empty((4, 5), torch.float32)
    assert small.shape == (4, 5)
    del small
    assert cpu_buffer_cache_info()["idle_buffers"] == 0


def test_idle_bytes_stay_under_the_limit_oldest_dropped_first(monkeypatch):
    monkeypatch.setenv("SNN_DET_ZOO_CPU_BUFFER_CACHE_MB", "20")  # room for one 12 MiB buffer
    first, second = buffers.empty(BIG, torch.float32), buffers.empty(BIG, torch.float32)
    newer = second.data_ptr()
    del first, second
    info = cpu_buffer_cache_info()
    assert info["idle_buffers"] == 1 and info["idle_bytes"] == 12 << 20 <= info["limit_bytes"]
    assert buffers.empty(BIG, torch.float32).data_ptr() == newer


def test_a_limit_of_zero_turns_the_cache_off(monkeypatch):
    monkeypatch.setenv("SNN_DET_ZOO_CPU_BUFFER_CACHE_MB", "0")
    t = buffers.empty(BIG, torch.float32)
    t.fill_(3.0)
    del t
    assert cpu_buffer_cache_info()["idle_buffers"] == 0


@pytest.mark.parametrize("value", ["-1", "lots", "nan", "inf", "1e400"])
def test_a_bad_limit_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("SNN_DET_ZOO_CPU_BUFFER_CACHE_MB", value)
    with pytest.raises(InvalidArgumentError, match="SNN_DET_ZOO_CPU_BUFFER_CACHE_MB must be a number of MiB"):
        buffers.empty(BIG, torch.float32)


def test_threads_never_share_a_lent_buffer():
    errors = []

    def work(k: int) -> None:
        for _ in range(20):
            t = buffers.empty(BIG, torch.float32).fill_(float(k))
            if not bool(t.eq(float(k)).all()):
                errors.append(k)
            del t

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    info = cpu_buffer_cache_info()
    assert info["lent_buffers"] == 0 and 1 <= info["idle_buffers"] <= 4


def test_the_fused_loop_outputs_survive_the_next_call():
    from snn_det_zoo.neurons._ilif_cpu import cpu_kernel_unavailable_reason, ilif_forward_cpu
    from snn_det_zoo.neurons._ilif_params import ILIFParams

    if cpu_kernel_unavailable_reason() is not None:
        pytest.skip(f"no fused CPU loop here: {cpu_kernel_unavailable_reason()}")
    p = ILIFParams(4, 4 / 3, False, 1.0, True)
    x = torch.randn(2, 1 << 20) * 2
    spikes, v_last, _, _ = ilif_forward_cpu(x, None, p, False, False, torch.float32)
    kept = spikes.clone(), v_last.clone()
    later = ilif_forward_cpu(x * 3, None, p, False, False, torch.float32)
    assert later[0].data_ptr() != spikes.data_ptr()
    assert torch.equal(spikes, kept[0]) and torch.equal(v_last, kept[1])


def test_turning_the_cache_off_later_drops_the_buffers_lent_before(monkeypatch):
    lent = buffers.empty(BIG, torch.float32)
    monkeypatch.setenv("SNN_DET_ZOO_CPU_BUFFER_CACHE_MB", "0")
    buffers.empty(BIG, torch.float32)
    del lent
    assert cpu_buffer_cache_info()["idle_bytes"] == 0
