"""SFT and online GRPO for the search agent on TRL, rollouts through the project's own episode loop (DESIGN.md §3.9).

`python -m training teach-tiny|sft|grpo|jobs|cancel`. Modules: `config` (paper defaults, flags), `data` (SFT
conversations, GRPO question sets), `sft`, `grpo`, `rollout` (TRL's `rollout_func` over `agent.loop`), `policy`
(the policy backend's token bookkeeping), `generation` (batched transformers turns), `vllm_turns` (turns on a vLLM
server), `rewards`, `recording` (rollouts into the trace store), `callbacks` and `job` (a job from inside),
`runner` (jobs from outside: the Train tab and the CLI), `teach` (the tiny model that speaks our protocol).
"""
