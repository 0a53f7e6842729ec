"""Early stopping: nequip 0.5's rule on recorded validation-loss sequences, expected stop epochs
worked out by hand from its EarlyStopping class (patience, absolute delta, moving reference)."""

import math

import pytest

from legato_jax.train.stopping import nequip_rule, relative_rule


def stop_epoch(rule, values, delta, patience):
    """Epoch (0 = the validation before training) at which the count reaches `patience`."""
    reference, count = math.inf, 0
    for epoch, v in enumerate(values):
        reference, count = rule(reference, count, v, delta)
        if count >= patience:
            return epoch
    return None


def test_nequip_rule_small_gains_count_and_move_the_reference():
    # delta 0.1, patience 3. 1.0 sets the reference; 0.8 < 0.9 resets; 0.75, 0.72, 0.70 are each
    # within 0.1 of the moving reference (0.8 -> 0.75 -> 0.72): counts 1, 2, 3 -> stop at epoch 4
    values = [1.0, 0.8, 0.75, 0.72, 0.70, 0.2]
    assert stop_epoch(nequip_rule, values, 0.1, 3) == 4


def test_nequip_rule_a_large_gain_resets_the_count():
    # 0.9 (count 1, ref 0.9), 0.95 (count 2, ref stays 0.9), 0.7 < 0.8 resets (ref 0.7),
    # 0.72 (1), 0.69 (2, ref 0.69), 0.6 >= 0.59 (3) -> epoch 6
    values = [1.0, 0.9, 0.95, 0.7, 0.72, 0.69, 0.6]
    assert stop_epoch(nequip_rule, values, 0.1, 3) == 6


def test_nequip_rule_with_an_absolute_delta_above_the_loss_counts_every_epoch():
    # the paper's delta 0.005 against losses ~1e-3: every epoch counts, however much the loss falls
    values = [4e-3, 3e-3, 2e-3, 1e-3]
    assert stop_epoch(nequip_rule, values, 0.005, 3) == 3
    assert stop_epoch(relative_rule, values, 0.005, 3) is None  # a relative delta keeps training


def test_zero_delta_rules_agree():
    values = [1.0, 0.9, 0.9, 0.95, 0.8, 0.85, 0.81, 0.82, 0.79, 0.8, 0.8, 0.8]
    for patience in (1, 2, 3):
        assert stop_epoch(nequip_rule, values, 0.0, patience) == stop_epoch(relative_rule, values, 0.0, patience)


@pytest.mark.parametrize("rule", ["best", ""])
def test_an_unknown_rule_is_refused(rule):
    from legato_jax.errors import ConfigError
    from legato_jax.train.config import TrainConfig

    with pytest.raises(ConfigError, match="early_stop_rule' must be one of nequip, relative"):
        TrainConfig(early_stop_rule=rule)
