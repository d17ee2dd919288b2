"""``trainer.compile`` and ``trainer.channels_last``: same model, same names, same numbers."""

from __future__ import annotations

import shutil

import pytest
import torch

from audioclf.models import create_model
from audioclf.training.trainer import speed_up_model


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("cnn_lite", 3, channels=[4, 8])


def test_channels_last_keeps_names_and_outputs() -> None:
    plain, fast = _model().eval(), _model().eval()
    speed_up_model(fast, channels_last=True)
    convs = [p for n, p in fast.named_parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert not all(p.is_contiguous() for p in convs)  # really stored NHWC, not a no-op
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, plain.clip_samples) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on the CPU needs a C++ compiler (g++), not installed here")
def test_compiled_model_trains_a_step_like_the_eager_one() -> None:
    eager, compiled = _model(), _model()
    speed_up_model(compiled, compile=True)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no _orig_mod. prefix
    x, y = torch.randn(4, eager.clip_samples) * 0.1, torch.tensor([0, 1, 2, 0])
    losses = []
    for m in (eager, compiled):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], atol=1e-4, rtol=1e-4)
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters(), strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-3, msg=name)
    # it went through the compiler: dynamo counted a compiled frame
    from torch._dynamo.utils import counters

    assert counters["stats"]["unique_graphs"] >= 1
