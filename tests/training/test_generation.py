"""Batched turn generation with transformers: the same tokens as one request at a time, in fewer rounds."""

from __future__ import annotations

import threading

import pytest
from PIL import Image

from agent.conversation import first_messages
from agent.protocol import get_dialect
from training.generation import BatchedGenerator, Sampling
from training.policy import TurnRequest, render_prompt

DIALECT = get_dialect("deepmmsearch")


@pytest.fixture(scope="module")
def tiny():
    from agent.models.tiny import build_tiny_vlm

    return build_tiny_vlm()


def requests(processor) -> list[TurnRequest]:
    """Prompts of different lengths, with and without images of different sizes."""
    out = []
    for question, image in [
        ("Who designed this building?", Image.new("RGB", (64, 48), "red")),
        ("In which year was this bridge built, and by whom?", Image.new("RGB", (90, 120), "green")),
        ("What is this?", None),
    ]:
        ids, mm, images = render_prompt(processor, first_messages(DIALECT, question, image, max_tool_calls=10))
        out.append(TurnRequest(ids, mm, max_new_tokens=12, stop=DIALECT.stop_sequences, images=tuple(images)))
    return out


def serve_all(generator: BatchedGenerator, batch: list[TurnRequest]) -> list[list[int]]:
    outputs: list[list[int]] = [[] for _ in batch]
    done = threading.Event()

    def episode(i: int) -> None:
        with generator.episode():
            outputs[i] = generator.generate(batch[i], None).ids

    threads = [threading.Thread(target=episode, args=(i,)) for i in range(len(batch))]
    generator.begin(len(batch))
    for t in threads:
        t.start()

    def finished() -> bool:
        if all(not t.is_alive() for t in threads):
            done.set()
        return done.is_set()

    generator.serve(finished)
    return outputs


def test_a_batched_round_gives_each_episode_the_tokens_it_gets_alone(tiny):
    model, processor = tiny
    processor.tokenizer.padding_side = "left"
    batch = requests(processor)
    alone = [serve_all(BatchedGenerator(model, processor, Sampling(temperature=0.0)), [r])[0] for r in batch]
    together = BatchedGenerator(model, processor, Sampling(temperature=0.0), wait_s=5.0)
    outputs = serve_all(together, batch)
    assert outputs == alone
    assert all(len(ids) > 0 for ids in outputs)
    assert together.rounds[0][0] == len(batch)  # all three turns went in one generate call


def test_a_generation_failure_reaches_every_waiting_episode(tiny):
    model, processor = tiny
    bad = TurnRequest([10**6], {}, max_new_tokens=4, stop=())  # an id outside the vocabulary
    generator = BatchedGenerator(model, processor, Sampling(temperature=0.0))
    errors: list[str] = []

    def episode() -> None:
        with generator.episode():
            try:
                generator.generate(bad, None)
            except Exception as exc:
                errors.append(str(exc))

    thread = threading.Thread(target=episode)
    generator.begin(1)
    thread.start()
    generator.serve(lambda: not thread.is_alive())
    thread.join()
    assert errors and "generation failed" in errors[0]


def test_a_cancelled_turn_is_withdrawn_before_its_round(tiny):
    model, processor = tiny
    generator = BatchedGenerator(model, processor, Sampling(temperature=0.0))
    cancel = threading.Event()
    cancel.set()
    output = generator.generate(requests(processor)[2], cancel)  # nobody serves: it must not wait for a round
    assert output.ids == [] and generator.rounds == []
