"""Inter-annotator agreement computed from the store: Cohen's kappa for two annotators, Fleiss' for more.

Each "item" is one question annotators answer about an episode: whether a label applies (one item per label of
the label set), the correctness verdict, the approval, and the crop verdict. Only annotators' current
annotations count, and only episodes with at least two ratings of that item.

Fleiss' kappa here is the form that allows a different number of raters per episode (each episode's agreement
is normalised by its own n_i(n_i - 1)); with the same raters on every episode it is exactly Fleiss (1971).
We write these few lines instead of adding a statistics dependency for two formulas.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from traces.annotations import current_rows, label_set_in
from traces.models import episodes
from traces.records import AgreementRow

if TYPE_CHECKING:
    from traces.store import TraceStore


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa of two raters over items rated by both; None when undefined (no items, or chance = 1)."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[k] * second[k] for k in first.keys() | second.keys()) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def fleiss_kappa(items: Sequence[Sequence[Hashable]]) -> float | None:
    """Fleiss' kappa; each element is the list of ratings one item received (items with < 2 ratings are skipped)."""
    rated = [list(r) for r in items if len(r) >= 2]
    if not rated:
        return None
    totals: Counter[Hashable] = Counter()
    agreement = 0.0
    for ratings in rated:
        counts = Counter(ratings)
        n_i = len(ratings)
        agreement += (sum(c * c for c in counts.values()) - n_i) / (n_i * (n_i - 1))
        totals.update(counts)
    p_bar = agreement / len(rated)
    total = sum(totals.values())
    p_e = sum((c / total) ** 2 for c in totals.values())
    if p_e >= 1.0:
        return None
    return (p_bar - p_e) / (1.0 - p_e)


def observed_agreement(items: Sequence[Sequence[Hashable]]) -> float | None:
    """Share of agreeing rater pairs, averaged over items with at least two ratings."""
    rated = [list(r) for r in items if len(r) >= 2]
    if not rated:
        return None
    total = 0.0
    for ratings in rated:
        counts = Counter(ratings)
        n = len(ratings)
        total += (sum(c * c for c in counts.values()) - n) / (n * (n - 1))
    return total / len(rated)


def _row(item: str, ratings: dict[int, dict[str, Hashable]], annotators: list[str]) -> AgreementRow:
    """ratings: episode -> annotator -> rating (only annotators who rated this item)."""
    per_item = [list(by.values()) for by in ratings.values() if len(by) >= 2]
    if len(annotators) == 2:
        a, b = annotators
        pairs = [(by[a], by[b]) for by in ratings.values() if a in by and b in by]
        kappa, statistic = cohen_kappa(pairs), "cohen"
    else:
        kappa, statistic = fleiss_kappa(per_item), "fleiss"
    return AgreementRow(item, statistic, kappa, observed_agreement(per_item), len(per_item), len(annotators))


def agreement_table(
    store: TraceStore, *, run_id: int | None = None, annotators: Sequence[str] | None = None
) -> list[AgreementRow]:
    """One row per label of the label sets in use, then correct / approved / crop_verdict."""
    with store.read() as conn:
        rows = current_rows(conn)
        if run_id is not None:
            in_run = {pk for (pk,) in conn.execute(select(episodes.c.id).where(episodes.c.run_id == run_id))}
            rows = [r for r in rows if r.episode_id in in_run]
        if annotators is not None:
            wanted = set(annotators)
            rows = [r for r in rows if r.annotator in wanted]
        set_names = sorted({r.label_set for r in rows})
        label_sets = {name: label_set_in(conn, name).labels for name in set_names}
    by_episode: dict[int, dict[str, Any]] = {}
    for r in rows:
        by_episode.setdefault(r.episode_id, {})[r.annotator] = r
    shared = {ep: by for ep, by in by_episode.items() if len(by) >= 2}
    people = sorted({name for by in shared.values() for name in by})

    table: list[AgreementRow] = []
    for set_name in set_names:
        for label in label_sets[set_name]:
            ratings = {
                ep: {name: label in (r.labels or []) for name, r in by.items() if r.label_set == set_name}
                for ep, by in shared.items()
            }
            prefix = "label:" if len(set_names) == 1 else f"label:{set_name}/"
            table.append(_row(prefix + label, ratings, people))
    for field in ("correct", "approved", "crop_verdict"):
        ratings = {
            ep: {name: getattr(r, field) for name, r in by.items() if getattr(r, field) is not None}
            for ep, by in shared.items()
        }
        table.append(_row(field, ratings, people))
    return table
