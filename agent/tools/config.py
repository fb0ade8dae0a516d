"""Tool configuration: one dataclass whose fields declare their flags and environment variables.

Flags come from `agent.flags` (precedence: command-line flag > environment variable > default), so docs,
flags and code cannot drift apart. API keys are *not* config fields: they are read from the environment
only when the tools are built (agent/tools/wiring.py), so a ToolConfig can be stored with a trace or shown
in the UI without leaking a secret (DESIGN.md §3.6). This module imports no tool implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.flags import check_bounds, setting
from agent.tools.grounding import DEFAULT_MODEL, GroundingSettings
from agent.tools.http import HttpPolicy

TEXT_PROVIDERS = ("auto", "serpapi", "serper", "brave", "searxng", "local", "replay", "off")
IMAGE_PROVIDERS = ("auto", "serpapi", "cloud_vision", "replay", "off")
SUMMARISERS = ("auto", "openai", "model", "none")
KEY_VARS = {
    "serpapi": "SERPAPI_API_KEY",
    "serper": "SERPER_API_KEY",
    "brave": "BRAVE_API_KEY",
    "cloud_vision": "CLOUD_VISION_API_KEY",
}
SUMMARISER_KEY_VAR = "SUMMARISER_API_KEY"


@dataclass(frozen=True)
class ToolConfig:
    """Every tool setting, with a default that works (tools without keys are simply off)."""

    text_search: str = setting(
        "auto",
        "text search provider; auto = the first of serpapi, serper, brave (key set), searxng (base URL set), local (corpus set)",
        env="TEXT_SEARCH",
        choices=TEXT_PROVIDERS,
    )
    image_search: str = setting(
        "auto",
        "reverse image search provider; auto = serpapi (key and public base URL set), else cloud_vision (key set)",
        env="IMAGE_SEARCH",
        choices=IMAGE_PROVIDERS,
    )
    summariser: str = setting(
        "auto",
        "who summarises results: an OpenAI-compatible endpoint, the agent's own model, or none (snippets only); auto = openai if a summariser base URL is set, else the agent's model when available, else none",
        env="SUMMARISER",
        choices=SUMMARISERS,
    )
    summariser_base_url: str = setting(
        "",
        "OpenAI-compatible base URL for the summariser, e.g. http://localhost:8000/v1 (key from SUMMARISER_API_KEY)",
        env="SUMMARISER_BASE_URL",
    )
    summariser_model: str = setting("", "model name the summariser endpoint serves", env="SUMMARISER_MODEL")
    top_k: int = setting(5, "results used per search (the paper reads 5 pages)", low=1)
    candidates: int = setting(
        10, "results requested from the provider, so failed pages can be replaced by the next one"
    )
    fetch_pages: bool = setting(True, "fetch and read result pages (off: summarise provider snippets only)")
    page_timeout_s: float = setting(
        8.0, "seconds allowed per page fetch, body included", flag="--page-timeout", low=0.0, low_exclusive=True
    )
    page_max_bytes: int = setting(3_000_000, "largest page body read, in bytes", low=1)
    page_max_chars: int = setting(12_000, "page text kept per page, in characters")
    api_timeout_s: float = setting(
        20.0, "seconds allowed per search API call attempt", flag="--api-timeout", low=0.0, low_exclusive=True
    )
    retries: int = setting(2, "retries on 429/5xx/connection errors (Retry-After honoured)", low=0)
    max_retry_wait_s: float = setting(
        10.0, "longest Retry-After we wait; longer ones fail at once", flag="--max-retry-wait", low=0.0
    )
    max_redirects: int = setting(5, "redirects followed per request, each re-checked", low=0)
    rate_limit_per_s: float = setting(
        5.0, "requests per second per search provider (0 = unlimited)", flag="--rate-limit"
    )
    allow_private_fetch: bool = setting(
        False, "allow fetching pages on private, loopback and link-local addresses", env="ALLOW_PRIVATE_FETCH"
    )
    allow_fetch_networks: tuple[str, ...] = setting(
        (),
        "networks (CIDR) pages may be fetched from even when private, e.g. 127.0.0.0/8; repeatable",
        flag="--allow-fetch-network",
        metavar="CIDR",
    )
    cache_path: str = setting(
        "runs/tool_cache.db",
        "SQLite tool cache (also what replay reads); empty = no cache",
        env="TOOL_CACHE",
        flag="--tool-cache",
    )
    corpus_path: str = setting(
        "",
        "local FTS5 corpus for --text-search local (build with `python -m agent search build-corpus`)",
        env="LOCAL_CORPUS_PATH",
        flag="--corpus",
    )
    serpapi_base_url: str = setting("https://serpapi.com", "SerpAPI base URL", env="SERPAPI_BASE_URL")
    serper_base_url: str = setting("https://google.serper.dev", "Serper base URL", env="SERPER_BASE_URL")
    brave_base_url: str = setting("https://api.search.brave.com", "Brave Search API base URL", env="BRAVE_BASE_URL")
    searxng_base_url: str = setting(
        "", "SearXNG instance base URL, e.g. http://localhost:8888 (JSON format enabled)", env="SEARXNG_BASE_URL"
    )
    cloud_vision_base_url: str = setting(
        "https://vision.googleapis.com", "Google Cloud Vision base URL", env="CLOUD_VISION_BASE_URL"
    )
    public_base_url: str = setting(
        "",
        "public URL under which --crop-dir is served; Google Lens (serpapi image search) fetches crops from it",
        env="PUBLIC_BASE_URL",
    )
    crop_dir: str = setting(
        "runs/crops", "folder where images sent to Google Lens are written as <sha256>.png", env="CROP_DIR"
    )
    grounding_model: str = setting(
        DEFAULT_MODEL, "Grounding DINO hub id or local folder ('off' disables region search)", env="GROUNDING_MODEL"
    )
    grounding_device: str = setting("auto", "device for Grounding DINO: auto, cpu, cuda, cuda:N")
    box_threshold: float = setting(0.35, "Grounding DINO box score threshold", low=0.0, high=1.0)
    text_threshold: float = setting(0.25, "Grounding DINO text score threshold", low=0.0, high=1.0)
    crop_padding: float = setting(0.1, "padding added on each side of the box, as a fraction of its size", low=0.0)
    crop_min_size: int = setting(32, "smallest crop side in pixels (smaller boxes grow around their centre)", low=1)
    grounding_cpu_size: int = setting(
        400, "short side (px) images are resized to for Grounding DINO on CPU (the model's default is 800)", low=32
    )

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.candidates < self.top_k:
            raise ValueError(f"--candidates ({self.candidates}) must be at least --top-k ({self.top_k})")
        # Fail at start-up on bad limits and networks rather than at the first call.
        self.page_policy()
        self.api_policy()
        self.grounding_settings()

    def page_policy(self) -> HttpPolicy:
        return HttpPolicy(
            timeout_s=self.page_timeout_s,
            connect_timeout_s=min(5.0, self.page_timeout_s),
            max_bytes=self.page_max_bytes,
            max_redirects=self.max_redirects,
            retries=0,  # a failing page is replaced by the next result instead of retried
            guard_addresses=not self.allow_private_fetch,
            allowed_networks=self.allow_fetch_networks,
        )

    def summarises_with_agent_model(self) -> bool:
        """Whether results are summarised by the agent's own model (so a toolbox belongs to one model)."""
        return self.summariser == "model" or (self.summariser == "auto" and not self.summariser_base_url)

    def api_policy(self) -> HttpPolicy:
        return HttpPolicy(
            timeout_s=self.api_timeout_s,
            connect_timeout_s=min(5.0, self.api_timeout_s),
            max_bytes=10_000_000,
            max_redirects=self.max_redirects,
            retries=self.retries,
            max_retry_wait_s=self.max_retry_wait_s,
            rate_per_s=self.rate_limit_per_s,
        )

    def grounding_settings(self) -> GroundingSettings:
        return GroundingSettings(
            model=self.grounding_model,
            device=self.grounding_device,
            box_threshold=self.box_threshold,
            text_threshold=self.text_threshold,
            padding=self.crop_padding,
            min_size=self.crop_min_size,
            cpu_short_side=self.grounding_cpu_size,
            cpu_long_side=max(self.grounding_cpu_size, round(self.grounding_cpu_size * 1333 / 800)),
        )
