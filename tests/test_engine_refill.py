"""When a continuous batch refills: the square-root rule, from the costs it measures."""

from __future__ import annotations

import math

from lda_core.refill import RefillPolicy


def policy_after(batch: int, step: float, admission: float, ended_per_step: float) -> RefillPolicy:
    policy = RefillPolicy(batch)
    for _ in range(50):
        policy.observe(step, admitted=False, ended=ended_per_step)
        policy.observe(step + admission, admitted=True, ended=ended_per_step)
    return policy


def test_before_any_cost_is_seen_an_eighth_of_the_batch_is_enough() -> None:
    assert RefillPolicy(64).threshold() == 8
    assert RefillPolicy(4).threshold() == 1


def test_the_threshold_is_the_square_root_rule_of_what_it_measured() -> None:
    policy = policy_after(256, step=0.01, admission=0.012, ended_per_step=28)
    assert policy.threshold() == round(math.sqrt(2 * 256 * 1.2 * 28))


def test_dear_admissions_wait_for_more_free_slots_and_never_for_more_than_the_batch() -> None:
    cheap = policy_after(64, step=0.01, admission=0.001, ended_per_step=2).threshold()
    dear = policy_after(64, step=0.01, admission=0.05, ended_per_step=2).threshold()
    assert 1 <= cheap < dear < 64
    assert policy_after(64, step=0.01, admission=10.0, ended_per_step=8).threshold() == 64
