import numpy as np
import pytest

from audioclf.data.sampling import BalancedSampler


def _imbalanced() -> np.ndarray:
    # class 0 on 900 clips, class 1 on 90, class 2 on 10; clip 999 has classes 1 and 2
    t = np.zeros((1000, 3), np.uint8)
    t[:900, 0] = 1
    t[900:990, 1] = 1
    t[990:, 2] = 1
    t[999, 1] = 1
    return t


def test_classes_are_drawn_equally_often() -> None:
    t = _imbalanced()
    drawn = list(BalancedSampler(t, num_samples=3000, seed=0))
    per_class = t[drawn].sum(0)
    assert per_class.min() / per_class.max() > 0.9  # uniform sampling would give 90:9:1
    assert set(drawn) >= set(range(990, 1000))  # every rare clip is visited


def test_epochs_differ_and_are_reproducible() -> None:
    s = BalancedSampler(_imbalanced(), num_samples=100, seed=3)
    a = list(s)
    s.set_epoch(1)
    b = list(s)
    s.set_epoch(0)
    assert a != b and list(s) == a
    state = s.state_dict()
    s2 = BalancedSampler(_imbalanced(), num_samples=100)
    s2.load_state_dict(state)
    assert list(s2) == a


def test_ranks_split_one_stream() -> None:
    t = _imbalanced()
    full = list(BalancedSampler(t, num_samples=101, seed=0))
    parts = [list(BalancedSampler(t, num_samples=101, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert parts[0] == full[0::2] and parts[1] == full[1::2]
    assert len(parts[0]) == 51 and len(parts[1]) == 50


def test_bad_targets() -> None:
    with pytest.raises(ValueError, match="matrix"):
        BalancedSampler(np.zeros(5))
    with pytest.raises(ValueError, match="no class"):
        BalancedSampler(np.zeros((5, 2)))
