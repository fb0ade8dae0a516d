"""training.config: the settings' bounds, checked by the classes themselves (flags, forms and code alike)."""

from __future__ import annotations

import pytest

from agent.config import ModelConfig
from training.config import GRPOSettings, LaunchSettings, SFTSettings

REQUIRED = dict(model="m", data="d.jsonl", output_dir="o")


@pytest.mark.parametrize(
    ("cls", "values", "message"),
    [
        (SFTSettings, {"learning_rate": 0.0}, "--learning-rate must be above 0, not 0"),
        (SFTSettings, {"lora_dropout": 1.5}, "--lora-dropout must be at most 1, not 1.5"),
        (SFTSettings, {"max_steps": 0}, "--max-steps must be at least 1 or -1, not 0"),
        (SFTSettings, {"max_length": 0}, "--max-length must be at least 1, not 0"),
        (GRPOSettings, {"num_generations": 1}, "--num-generations must be at least 2, not 1"),
        (GRPOSettings, {"top_p": 0.0}, "--top-p must be above 0, not 0"),
        (GRPOSettings, {"judge_weight": -0.1}, "--judge-weight must be at least 0, not -0.1"),
        (GRPOSettings, {"judge_weight": 0.0, "format_weight": 0.0}, "must not both be 0"),
    ],
)
def test_training_settings_out_of_range_are_refused_naming_the_flag(cls, values, message):
    with pytest.raises(ValueError, match=message):
        cls(**REQUIRED, **values)


def test_grpo_rollouts_must_sample_while_an_eval_may_be_greedy():
    with pytest.raises(ValueError, match="--temperature must be above 0, not 0"):
        GRPOSettings(**REQUIRED, temperature=0.0)
    assert ModelConfig(temperature=0.0).temperature == 0.0


def test_max_steps_minus_one_runs_the_epochs_and_processes_are_bounded():
    assert SFTSettings(**REQUIRED, max_steps=-1).max_steps == -1
    assert LaunchSettings(num_processes=64).num_processes == 64
    with pytest.raises(ValueError, match="--num-processes must be at most 64, not 65"):
        LaunchSettings(num_processes=65)
