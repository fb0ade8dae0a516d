"""Text search pipeline speed: five pages fetched concurrently, then summarised; then a cached repeat.

A local fake web (tests/servers/search_providers.py) serves SearXNG-format results whose pages each
take 200 ms, and an OpenAI-compatible summariser. Targets (issue 3): pipeline wall time ≤ 1.3× the
slowest single page (sequential reading would be ≈5×); cached repeat ≤ 5 ms with zero requests.
Prints its figures last as one JSON line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.aio import run_sync  # noqa: E402
from agent.tools.config import ToolConfig  # noqa: E402
from agent.tools.http import HttpClient  # noqa: E402
from agent.tools.pages import PageFetcher  # noqa: E402
from agent.tools.wiring import build_toolbox  # noqa: E402
from tests.servers.search_providers import fake_web  # noqa: E402

PAGE_DELAY_S = 0.2
ROUNDS = 5


def main() -> dict:
    with fake_web() as web:
        web.default_pages(12, delay_s=PAGE_DELAY_S)
        config = ToolConfig(
            text_search="searxng",
            searxng_base_url=web.base_url,
            summariser="openai",
            summariser_base_url=web.url("/v1"),
            summariser_model="bench",
            allow_fetch_networks=("127.0.0.0/8",),
            cache_path=":memory:",
            grounding_model="off",
        )
        fetcher = PageFetcher(HttpClient("pages", config.page_policy()))
        run_sync(fetcher.fetch_text(web.hits[0].url))  # warm-up: imports, connection set-up
        singles = []
        for hit in web.hits[:5]:
            start = time.perf_counter()
            run_sync(fetcher.fetch_text(hit.url))
            singles.append(time.perf_counter() - start)
        slowest = max(singles)

        tool = build_toolbox(config, environ={}).text_search
        pipeline, cached, cached_requests = [], [], []
        for r in range(ROUNDS):
            query = f"bench query {r}"  # a new query each round: a live run, not a cache hit
            start = time.perf_counter()
            result = run_sync(tool.search_text(query, question="Which page?"))
            pipeline.append(time.perf_counter() - start)
            assert result.ok and len(result.items) == 5 and not result.cache_hit, result.error
            sent = len(web.requests)
            start = time.perf_counter()
            again = run_sync(tool.search_text(query, question="Which page?"))
            cached.append(time.perf_counter() - start)
            cached_requests.append(len(web.requests) - sent)
            assert again.cache_hit
    figures = {
        "bench": "text_search_pipeline",
        "page_delay_s": PAGE_DELAY_S,
        "slowest_single_page_s": round(slowest, 4),
        "pipeline_wall_s_median": round(statistics.median(pipeline), 4),
        "pipeline_wall_s_max": round(max(pipeline), 4),
        "ratio_to_slowest_page": round(statistics.median(pipeline) / slowest, 3),
        "ratio_target": 1.3,
        "cached_repeat_ms_median": round(statistics.median(cached) * 1000, 3),
        "cached_repeat_ms_max": round(max(cached) * 1000, 3),
        "cached_repeat_target_ms": 5.0,
        "cached_repeat_requests": max(cached_requests),
        "rounds": ROUNDS,
    }
    figures["meets_targets"] = (
        figures["ratio_to_slowest_page"] <= 1.3
        and figures["cached_repeat_ms_median"] <= 5.0
        and figures["cached_repeat_requests"] == 0
    )
    return figures


if __name__ == "__main__":
    print(json.dumps(main()))
