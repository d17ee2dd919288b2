"""Block-spec network (seed 001): every block kind and option, the res_block settings, the
activation and pooling layers it uses, and the spec error messages."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audioclf.models import create_model
from audioclf.models.blocks import BlockNet, ResBlock2d, SpecError, default_blocks
from audioclf.models.layers.activations import SwiGLU, create_activation, list_activations
from audioclf.models.layers.dropblock import RandomDropBlock
from audioclf.models.layers.pooling import GlobalPool

# 0.5 s at 8 kHz, 64-sample hop: 63 frames x 16 mel bins
TINY = dict(sample_rate=8000, clip_seconds=0.5, n_fft=256, hop_length=64, n_mels=16)


def tiny(blocks, res_block=None, num_classes=3) -> BlockNet:
    return create_model(
        "blocknet", num_classes=num_classes, blocks=blocks, res_block=res_block, **TINY
    )


def test_default_spec_trains():
    torch.manual_seed(0)
    model = create_model("blocknet", num_classes=4, **TINY)
    assert model.clip_samples == 4000 and model.sample_rate == 8000
    wave = torch.randn(3, model.clip_samples)
    logits = model(wave)
    assert logits.shape == (3, 4)
    assert model.embed(wave).shape == (3, model.head.in_features)
    F.cross_entropy(logits, torch.tensor([0, 1, 3])).backward()
    assert all(p.grad is not None for p in model.parameters())
    # default_blocks hands out a fresh list: mutating one cannot change the next model
    spec = default_blocks()
    spec.clear()
    assert len(default_blocks()) > 0


def test_every_block_kind_builds_and_tracks_shapes():
    spec = [
        {"res": [4, 6]},
        {"max_pool": [3, 2]},
        {"activation": "relu"},
        {"drop": [1.0, 0.2, 2, 2]},
        {"dropout": 0.1},
        {"pooling": {"mode": "sum", "flat": True}},
        {"fc": 10},
        {"activation": "swiglu"},
        {"dropout": 0.2},
    ]
    model = tiny(spec, num_classes=5)
    b = model.blocks
    assert isinstance(b[0], ResBlock2d) and b[0].conv2.out_channels == 6
    assert isinstance(b[1], nn.MaxPool2d) and b[1].kernel_size == (3, 1) and b[1].stride == (2, 1)
    assert isinstance(b[2], nn.ReLU)
    assert isinstance(b[3], RandomDropBlock) and b[3].p == 1.0
    assert b[3].dropblock.drop_prob == 0.2 and b[3].dropblock.block_size == (2, 2)
    assert type(b[4]) is nn.Dropout2d  # on a feature map: whole channels
    assert isinstance(b[5], GlobalPool) and b[5].mode == "sum" and b[5].flat
    # flat pooling keeps channels x bins: 6 * 16
    assert isinstance(b[6], nn.Linear) and (b[6].in_features, b[6].out_features) == (96, 10)
    assert isinstance(b[7], SwiGLU) and b[7].channels == 10
    assert type(b[8]) is nn.Dropout  # on pooled vectors: units
    # the final layer to num_classes is added automatically after the last block
    assert (model.head.in_features, model.head.out_features) == (10, 5)

    x = torch.randn(2, 1, 20, 16)
    model.eval()
    assert b[0](x).shape == (2, 6, 20, 16)
    assert b[1](b[0](x)).shape == (2, 6, 9, 16)  # (20 - 3) // 2 + 1 over time only
    wave = torch.randn(2, model.clip_samples)
    assert model.embed(wave).shape == (2, 10)
    model.train()
    logits = model(wave)
    assert logits.shape == (2, 5)
    logits.sum().backward()


@pytest.mark.parametrize("flat, dim", [(False, 8), (True, 8 * 16)])
def test_pooling_flat_sets_the_feature_size(flat, dim):
    model = tiny([{"res": [8, 8]}, {"pooling": {"mode": "avg", "flat": flat}}])
    assert model.head.in_features == dim
    assert model.embed(torch.randn(2, model.clip_samples)).shape == (2, dim)


def test_pooling_modes_combine_mean_and_max():
    x = torch.randn(2, 3, 5, 4)
    mean, peak = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
    expected = {"avg": mean, "max": peak, "sum": mean + peak, "mul": mean * peak}
    for mode, want in expected.items():
        assert torch.allclose(GlobalPool(mode)(x), want)
    flat = GlobalPool("max", flat=True)(x)
    assert flat.shape == (2, 3 * 4)
    # feature c * F + f is the max over time of channel c, bin f
    assert torch.allclose(flat[:, 1 * 4 + 2], x[:, 1, :, 2].amax(dim=1))


@pytest.mark.parametrize("name", list_activations())
def test_every_activation_keeps_shape(name):
    for shape in [(2, 6), (2, 6, 5, 4)]:
        act = create_activation(name, channels=6)
        x = torch.randn(*shape)
        assert act(x).shape == x.shape


def test_swiglu_is_silu_gate_times_linear_value():
    torch.manual_seed(0)
    act = SwiGLU(channels=4)
    x = torch.randn(2, 4, 3, 5)
    w, b = act.proj.weight, act.proj.bias  # (8, 4), (8,)
    h = torch.einsum("bctf,oc->botf", x, w) + b[None, :, None, None]
    want = F.silu(h[:, :4]) * h[:, 4:]
    assert torch.allclose(act(x), want, atol=1e-6)
    with pytest.raises(ValueError, match="built for 4 channels got 3"):
        act(torch.randn(2, 3, 3, 5))


@pytest.mark.parametrize(
    "name, layer",
    [("gelu", nn.GELU), ("relu", nn.ReLU), ("lrelu", nn.LeakyReLU), ("swiglu", SwiGLU)],
)
def test_res_block_activation(name, layer):
    model = tiny([{"res": [4, 4]}, {"pooling": {}}], res_block={"activation": name})
    block = model.blocks[0]
    assert isinstance(block.pre.act, layer) and isinstance(block.mid.act, layer)
    model(torch.randn(2, model.clip_samples)).sum().backward()


@pytest.mark.parametrize("batch_first", [True, False])
def test_res_block_batch_first_orders_norm_and_activation(batch_first):
    torch.manual_seed(0)
    block = ResBlock2d(2, 4, 4, activation="relu", batch_first=batch_first).eval()
    with torch.no_grad():
        block.pre.norm.bias.fill_(-0.5)  # makes the order matter for relu
    x = torch.randn(2, 2, 6, 6)
    pre = block.pre
    want = torch.relu(pre.norm(x)) if batch_first else pre.norm(torch.relu(x))
    assert torch.allclose(pre(x), want)
    # same weights, other order: another function, same state-dict keys
    other = ResBlock2d(2, 4, 4, activation="relu", batch_first=not batch_first).eval()
    other.load_state_dict(block.state_dict())
    assert not torch.allclose(block(x), other(x))


@pytest.mark.parametrize("kernel, dilation", [([3, 3], (1, 1)), ([2, 4], (2, 2)), ([5, 2], (1, 2))])
def test_res_block_kernels_keep_the_map_size(kernel, dilation):
    model = tiny(
        [{"res": [4, 5]}, {"pooling": {}}],
        res_block={"kernel_size": kernel, "kernel_size_res": [2, 2], "batch_first": False},
    )
    block = model.blocks[0]
    assert block.conv1.kernel_size == tuple(kernel) and block.conv1.dilation == dilation
    assert block.conv_res.kernel_size == (2, 2) and block.conv_res.dilation == (2, 2)
    x = torch.randn(2, 1, 11, 16)
    assert block(x).shape == (2, 5, 11, 16)


def test_drop_block_probability_and_eval():
    torch.manual_seed(0)
    x = torch.ones(8, 4, 16, 16)
    always = RandomDropBlock(1.0, 0.3, (4, 4)).train()
    out = always(x)
    assert all((out[i] == 0).any() for i in range(8))  # every example got blocks dropped
    never = RandomDropBlock(0.0, 0.3, (4, 4)).train()
    assert torch.equal(never(x), x)
    assert torch.equal(always.eval()(x), x)  # inactive outside training
    half = RandomDropBlock(0.5, 0.3, (4, 4)).train()
    out = half(x)
    touched = [bool((out[i] != 1).any()) for i in range(8)]
    assert any(touched) and not all(touched)  # chosen per example


def test_dropout2d_drops_whole_channels():
    torch.manual_seed(0)
    model = tiny([{"dropout": 0.5}, {"res": [4, 4]}, {"pooling": {}}]).train()
    x = torch.ones(4, 8, 5, 5)
    out = model.blocks[0](x)
    per_channel = out.flatten(2)
    assert torch.all((per_channel == 0).all(dim=2) | (per_channel == 2).all(dim=2))


ALLOWED_KINDS = "activation, drop, dropout, fc, max_pool, pooling, res"
ALLOWED_ACTS = "gelu, lrelu, relu, silu, swiglu"
POOL = {"pooling": {"mode": "avg"}}


@pytest.mark.parametrize(
    "blocks, res_block, message",
    [
        ([{"res": [64]}, POOL], None, "blocks[0] 'res': expected [int, int], got [64]"),
        (
            [{"res": [8, 0]}, POOL],
            None,
            "blocks[0] 'res': expected [int, int] with values >= 1, got [8, 0]",
        ),
        (
            [{"res": [8, 8]}, {"conv": 3}],
            None,
            f"blocks[1]: unknown block kind 'conv'; allowed kinds: {ALLOWED_KINDS}",
        ),
        (
            [{"res": [8, 8], "max_pool": [2, 2]}],
            None,
            "blocks[0]: expected a mapping with one key (the block kind)",
        ),
        (["res", POOL], None, "blocks[0]: expected a mapping with one key"),
        (
            [{"max_pool": [2]}, POOL],
            None,
            "blocks[0] 'max_pool': expected [kernel, stride], got [2]",
        ),
        (
            [{"max_pool": [100, 2]}, POOL],
            None,
            "blocks[0] 'max_pool': kernel 100 is longer than the 63 frames left",
        ),
        (
            [{"max_pool": [40, 2]}, {"max_pool": [13, 1]}, POOL],  # 63 -> 12 frames
            None,
            "blocks[1] 'max_pool': kernel 13 is longer than the 12 frames left",
        ),
        (
            [{"activation": "tanh"}, POOL],
            None,
            f"blocks[0] 'activation': unknown activation 'tanh'; allowed: {ALLOWED_ACTS}",
        ),
        (
            [{"activation": ["relu"]}, POOL],
            None,
            "blocks[0] 'activation': unknown activation ['relu']",
        ),
        (
            [{"drop": [0.5, 0.1, 4]}, POOL],
            None,
            "blocks[0] 'drop': expected [p, dp, t, f], got [0.5, 0.1, 4]",
        ),
        (
            [{"drop": [1.5, 0.1, 4, 2]}, POOL],
            None,
            "blocks[0] 'drop': p (probability of applying it) must be a number in [0, 1], got 1.5",
        ),
        (
            [{"drop": [0.5, 1.0, 4, 2]}, POOL],
            None,
            "blocks[0] 'drop': dp (fraction of units dropped) must be a number in [0, 1), got 1.0",
        ),
        (
            [{"drop": [0.5, 0.1, 4, 2.5]}, POOL],
            None,
            "blocks[0] 'drop': expected block size [t, f] as ints, got [4, 2.5]",
        ),
        (
            [{"dropout": 1.0}, POOL],
            None,
            "blocks[0] 'dropout': rate must be a number in [0, 1), got 1.0",
        ),
        (
            [{"dropout": "0.1"}, POOL],
            None,
            "blocks[0] 'dropout': rate must be a number in [0, 1), got '0.1'",
        ),
        (
            [{"fc": 16}, POOL],
            None,
            "blocks[0] 'fc': needs pooled features; put a 'pooling' block before it",
        ),
        ([POOL, {"fc": 0}], None, "blocks[1] 'fc': expected a positive int (out_features), got 0"),
        (
            [{"pooling": {"mode": "median"}}],
            None,
            "blocks[0] 'pooling': unknown mode 'median'; allowed modes: avg, max, mul, sum",
        ),
        (
            [{"pooling": {"mode": "avg", "flatten": True}}],
            None,
            "blocks[0] 'pooling': unknown option 'flatten'; allowed options: flat, mode",
        ),
        (
            [{"pooling": {"flat": "yes"}}],
            None,
            "blocks[0] 'pooling': 'flat' must be true or false, got 'yes'",
        ),
        (
            [{"pooling": "avg"}],
            None,
            "blocks[0] 'pooling': expected a mapping {mode: ..., flat: ...}, got 'avg'",
        ),
        (
            [POOL, {"res": [8, 8]}],
            None,
            "blocks[1] 'res': needs a (channels, time, freq) feature map, but blocks[0] 'pooling' already pooled it",
        ),
        ([POOL, POOL], None, "blocks[1] 'pooling': needs a (channels, time, freq) feature map"),
        (
            [POOL, {"drop": [0.5, 0.1, 2, 2]}],
            None,
            "blocks[1] 'drop': needs a (channels, time, freq) feature map",
        ),
        (
            [POOL, {"max_pool": [2, 2]}],
            None,
            "blocks[1] 'max_pool': needs a (channels, time, freq) feature map",
        ),
        ([{"res": [8, 8]}], None, "blocks: the spec has no 'pooling' block"),
        ([], None, "blocks: the spec has no 'pooling' block"),
        ({"res": [8, 8]}, None, "blocks: expected a list of blocks"),
        (
            [POOL],
            {"kernel": [3, 3]},
            "res_block: unknown option 'kernel'; allowed options: activation, batch_first, kernel_size, kernel_size_res",
        ),
        (
            [POOL],
            {"activation": "tanh"},
            f"res_block 'activation': unknown activation 'tanh'; allowed: {ALLOWED_ACTS}",
        ),
        (
            [POOL],
            {"batch_first": "yes"},
            "res_block 'batch_first': must be true or false, got 'yes'",
        ),
        ([POOL], {"kernel_size": 3}, "res_block 'kernel_size': expected [int, int], got 3"),
        (
            [POOL],
            {"kernel_size_res": [1, 1, 1]},
            "res_block 'kernel_size_res': expected [int, int], got [1, 1, 1]",
        ),
        ([POOL], [("activation", "relu")], "res_block: expected a mapping"),
    ],
)
def test_bad_spec_names_block_kind_and_option(blocks, res_block, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        tiny(blocks, res_block=res_block)


def test_spec_error_is_a_value_error_through_create_model():
    with pytest.raises(
        ValueError, match=re.escape("blocks[0] 'res': expected [int, int], got [64]")
    ):
        create_model("blocknet", num_classes=2, blocks=[{"res": [64]}])
