"""agent/visible_text.py: long runs collapsed and whitespace made visible, the same rule for a whole text and
for a stream of pieces (the CLI), so a turn of thousands of newlines is one short line."""

from hypothesis import given
from hypothesis import strategies as st

from agent.visible_text import MIN_RUN, RunCollapser, collapse_runs


def test_a_long_run_becomes_its_sign_and_count_and_still_ends_its_line():
    assert collapse_runs("\n" * 2000) == "⏎ ×2000\n"
    assert collapse_runs("a" + "!" * 50 + "b") == "a! ×50b"
    assert collapse_runs(" " * 12 + "x") == "␠ ×12x"


def test_short_runs_stay_as_they_are_unless_whitespace_is_made_visible():
    text = "two\n\nlines\tand  spaces"
    assert collapse_runs(text) == text
    assert collapse_runs(text, visible_whitespace=True) == "two⏎\n⏎\nlines⇥and  spaces"
    assert collapse_runs("a\u200bb\u00a0c", visible_whitespace=True) == "a⟨U+200B⟩b⍽c"


def test_a_run_of_exactly_the_threshold_is_collapsed_and_one_less_is_not():
    assert collapse_runs("x" * MIN_RUN) == f"x ×{MIN_RUN}"
    assert collapse_runs("x" * (MIN_RUN - 1)) == "x" * (MIN_RUN - 1)


@given(
    text=st.text(alphabet=st.sampled_from(list("ab \n\t`")), max_size=200),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
    visible=st.booleans(),
)
def test_streaming_any_split_gives_the_same_text_as_the_whole(text, cuts, visible):
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    collapser = RunCollapser(visible_whitespace=visible)
    streamed = "".join(collapser.feed(text[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))
    assert streamed + collapser.flush() == collapse_runs(text, visible_whitespace=visible)
    assert collapser.flush() == ""  # empty again, ready for the next turn


def test_nothing_of_a_long_run_is_printed_while_it_streams():
    collapser = RunCollapser()
    assert collapser.feed("ok") == "o"  # the last run ("k") waits for a different character
    assert [collapser.feed("\n" * 100) for _ in range(20)] == ["k"] + [""] * 19
    assert collapser.feed("done") + collapser.flush() == "⏎ ×2000\ndone"
