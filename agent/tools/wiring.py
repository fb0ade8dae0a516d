"""Turn a ToolConfig plus the environment into tools: which provider each tool uses, or why it is off.

`plan_tools` decides, without building anything, which provider each tool gets (after `auto`) and, for each
tool that is off, a reason naming the variable or flag that turns it on ("SERPAPI_API_KEY is not set: ...").
The CLI prints those reasons at start-up, the app shows them, and the model reads them when it calls a tool
that is off. `build_toolbox` builds the planned tools; provider modules are imported only when used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.models.base import ModelBackend
from agent.tools.base import ImageSearchTool, TextSearchTool, Toolbox
from agent.tools.cache import ToolCache
from agent.tools.config import KEY_VARS, SUMMARISER_KEY_VAR, ToolConfig
from agent.tools.grounding import GroundingDinoGrounder
from agent.tools.http import HttpClient
from agent.tools.pages import PageFetcher
from agent.tools.replay import CachedImageSearch, CachedTextSearch, ReplayImageSearch, ReplayTextSearch
from agent.tools.summarise import ModelSummariser, NoSummariser, OpenAIChatSummariser, Summariser
from agent.tools.text_search import SearchProvider, WebTextSearch

REPLAY_NEEDS_CACHE = "replay needs the tool cache: set --tool-cache PATH (TOOL_CACHE) to the cache a live run recorded"


@dataclass(frozen=True)
class ToolPlan:
    """Which provider each tool uses (after `auto`), or None when the tool is off."""

    text_search: str | None
    image_search: str | None
    grounding: str | None  # the Grounding DINO model id or folder
    off_reasons: dict[str, str] = field(default_factory=dict)  # tool -> what is missing and what to set


def plan_tools(config: ToolConfig, environ: Mapping[str, str] | None = None) -> ToolPlan:
    """The tools `config` and the environment give, and for each tool that is off, the variable or flag
    that turns it on. Builds nothing, touches no network and reads no file: safe to call at start-up."""
    environ = os.environ if environ is None else environ
    off: dict[str, str] = {}
    text, why = _text_choice(config, environ)
    if why:
        off["text_search"] = why
    image, why = _image_choice(config, environ)
    if why:
        off["image_search"] = why
    grounding: str | None = config.grounding_model.strip()
    if grounding.lower() in ("", "off", "none"):
        grounding = None
        off["grounding"] = (
            "grounding is off (--grounding-model off): region search is unavailable; set --grounding-model "
            "(GROUNDING_MODEL) to a Grounding DINO id or folder"
        )
    return ToolPlan(text_search=text, image_search=image, grounding=grounding, off_reasons=off)


def build_toolbox(
    config: ToolConfig, *, summariser_model: ModelBackend | None = None, environ: Mapping[str, str] | None = None
) -> Toolbox:
    """Tools for an episode, as `plan_tools` plans them. Nothing here touches the network or loads a model:
    Grounding DINO loads on first use. Raises ValueError for a summariser that cannot work."""
    environ = os.environ if environ is None else environ
    plan = plan_tools(config, environ)
    cache = ToolCache(config.cache_path) if config.cache_path else None
    summariser = build_summariser(config, summariser_model, environ)
    text = _build_text_search(config, plan.text_search, summariser, cache, environ) if plan.text_search else None
    image = _build_image_search(config, plan.image_search, summariser, cache, environ) if plan.image_search else None
    grounder = GroundingDinoGrounder(config.grounding_settings()) if plan.grounding else None
    return Toolbox(text_search=text, image_search=image, grounder=grounder, off_reasons=dict(plan.off_reasons))


def build_summariser(config: ToolConfig, model: ModelBackend | None, environ: Mapping[str, str]) -> Summariser:
    choice = config.summariser
    if choice == "auto":
        choice = "openai" if not config.summarises_with_agent_model() else "model" if model is not None else "none"
    if choice == "openai":
        if not config.summariser_base_url or not config.summariser_model:
            raise ValueError(
                "--summariser openai needs --summariser-base-url (SUMMARISER_BASE_URL) and --summariser-model (SUMMARISER_MODEL)"
            )
        return OpenAIChatSummariser(
            config.summariser_base_url, config.summariser_model, api_key=environ.get(SUMMARISER_KEY_VAR, "")
        )
    if choice == "model":
        if model is None:
            raise ValueError(
                "--summariser model needs the agent's loaded model; none was given (use openai or none here)"
            )
        return ModelSummariser(model)
    return NoSummariser()


def _key(provider: str, environ: Mapping[str, str]) -> str:
    return environ.get(KEY_VARS[provider], "").strip()


# --- text search --------------------------------------------------------------------------------------


def _text_choice(config: ToolConfig, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    name = config.text_search
    if name == "off":
        return None, "text search is off (--text-search off)"
    if name == "replay":
        return ("replay", None) if config.cache_path else (None, REPLAY_NEEDS_CACHE)
    if name == "auto":
        for candidate in ("serpapi", "serper", "brave"):
            if _key(candidate, environ):
                return candidate, None
        if config.searxng_base_url:
            return "searxng", None
        if config.corpus_path:
            return "local", None
        return None, (
            "no text search provider is configured: set SERPAPI_API_KEY, SERPER_API_KEY or BRAVE_API_KEY, "
            "or SEARXNG_BASE_URL for a SearXNG instance, or --corpus PATH (LOCAL_CORPUS_PATH) for a local corpus"
        )
    alternatives = "or choose another with --text-search (searxng and local need no key)"
    if name in ("serpapi", "serper", "brave") and not _key(name, environ):
        return None, f"{KEY_VARS[name]} is not set: text search via {name} is off; set it {alternatives}"
    if name == "searxng" and not config.searxng_base_url:
        return None, (
            f"SEARXNG_BASE_URL is not set: text search via searxng is off; set it or --searxng-base-url, {alternatives}"
        )
    if name == "local" and not config.corpus_path:
        return None, (
            "no local corpus: set --corpus PATH (LOCAL_CORPUS_PATH), built with "
            "`python -m agent search build-corpus docs.jsonl PATH`"
        )
    return name, None


def _text_provider(config: ToolConfig, name: str, environ: Mapping[str, str]) -> SearchProvider:
    policy = config.api_policy()
    if name == "serpapi":
        from agent.tools.serpapi import SerpApiSearch

        return SerpApiSearch(_key(name, environ), base_url=config.serpapi_base_url, policy=policy)
    if name == "serper":
        from agent.tools.serper import SerperSearch

        return SerperSearch(_key(name, environ), base_url=config.serper_base_url, policy=policy)
    if name == "brave":
        from agent.tools.brave import BraveSearch

        return BraveSearch(_key(name, environ), base_url=config.brave_base_url, policy=policy)
    if name == "searxng":
        from agent.tools.searxng import SearxngSearch

        return SearxngSearch(config.searxng_base_url, policy=policy)
    if name == "local":
        from agent.tools.local_corpus import LocalCorpusSearch

        return LocalCorpusSearch(config.corpus_path, page_chars=config.page_max_chars)
    raise ValueError(f"unknown text search provider {name!r}")


def _build_text_search(
    config: ToolConfig, name: str, summariser: Summariser, cache: ToolCache | None, environ: Mapping[str, str]
) -> TextSearchTool:
    if name == "replay":
        assert cache is not None  # plan_tools turns replay off without a cache path
        return ReplayTextSearch(cache)
    # Local documents carry their text; there is nothing to fetch.
    fetcher = (
        PageFetcher(HttpClient("pages", config.page_policy()), max_chars=config.page_max_chars)
        if config.fetch_pages and name != "local"
        else None
    )
    tool = WebTextSearch(
        _text_provider(config, name, environ),
        fetcher=fetcher,
        summariser=summariser,
        top_k=config.top_k,
        candidates=config.candidates,
    )
    return CachedTextSearch(tool, cache, settings=tool.cache_settings()) if cache is not None else tool


# --- image search -------------------------------------------------------------------------------------


def _image_choice(config: ToolConfig, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    name = config.image_search
    if name == "off":
        return None, "image search is off (--image-search off)"
    if name == "replay":
        return ("replay", None) if config.cache_path else (None, REPLAY_NEEDS_CACHE)
    if name == "auto":
        if _key("serpapi", environ) and config.public_base_url:
            return "serpapi", None
        if _key("cloud_vision", environ):
            return "cloud_vision", None
        return None, (
            "no reverse image search provider is configured: set CLOUD_VISION_API_KEY (takes image bytes), "
            "or SERPAPI_API_KEY together with PUBLIC_BASE_URL (Google Lens fetches crops from a public URL)"
        )
    if name == "serpapi":
        if not _key("serpapi", environ):
            return None, (
                "SERPAPI_API_KEY is not set: image search via Google Lens is off; set it or choose --image-search cloud_vision"
            )
        if not config.public_base_url:
            return None, (
                f"PUBLIC_BASE_URL is not set: Google Lens needs crops at a public URL; serve {config.crop_dir} publicly and set "
                "--public-base-url (PUBLIC_BASE_URL) to its address, or choose --image-search cloud_vision"
            )
    if name == "cloud_vision" and not _key("cloud_vision", environ):
        return None, (
            "CLOUD_VISION_API_KEY is not set: image search via Cloud Vision is off; set it or choose --image-search serpapi"
        )
    return name, None


def _build_image_search(
    config: ToolConfig, name: str, summariser: Summariser, cache: ToolCache | None, environ: Mapping[str, str]
) -> ImageSearchTool:
    from agent.tools.image_search import ImagePublisher, ReverseImageSearch

    if name == "replay":
        assert cache is not None  # plan_tools turns replay off without a cache path
        return ReplayImageSearch(cache)
    policy = config.api_policy()
    if name == "serpapi":
        from agent.tools.serpapi import SerpApiLens

        provider = SerpApiLens(
            _key("serpapi", environ),
            ImagePublisher(config.crop_dir, config.public_base_url),
            base_url=config.serpapi_base_url,
            policy=policy,
        )
    else:
        from agent.tools.cloud_vision import CloudVisionWebDetection

        provider = CloudVisionWebDetection(
            _key("cloud_vision", environ), base_url=config.cloud_vision_base_url, policy=policy
        )
    tool = ReverseImageSearch(provider, summariser=summariser, top_k=config.top_k)
    return CachedImageSearch(tool, cache, settings=tool.cache_settings()) if cache is not None else tool
