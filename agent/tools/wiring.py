"""Turn a ToolConfig plus the environment into tool objects, or a reason the tool is off.

Split from config.py so that reading flags stays import-light. Each builder returns (tool, None) or
(None, reason); the reason names what to set, e.g. "SERPAPI_API_KEY is not set: ...".
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.models.base import ModelBackend
from agent.tools.base import ImageSearchTool, TextSearchTool
from agent.tools.cache import ToolCache
from agent.tools.config import KEY_VARS, SUMMARISER_KEY_VAR, ToolConfig
from agent.tools.http import HttpClient
from agent.tools.pages import PageFetcher
from agent.tools.replay import CachedImageSearch, CachedTextSearch, ReplayImageSearch, ReplayTextSearch
from agent.tools.summarise import ModelSummariser, NoSummariser, OpenAIChatSummariser, Summariser
from agent.tools.text_search import SearchProvider, WebTextSearch


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


def _text_provider(
    config: ToolConfig, name: str, environ: Mapping[str, str]
) -> tuple[SearchProvider | None, str | None]:
    policy = config.api_policy()
    alternatives = "or choose another with --text-search (searxng and local need no key)"
    if name in ("serpapi", "serper", "brave"):
        key = _key(name, environ)
        if not key:
            return None, f"{KEY_VARS[name]} is not set: text search via {name} is off; set it {alternatives}"
        if name == "serpapi":
            from agent.tools.serpapi import SerpApiSearch

            return SerpApiSearch(key, base_url=config.serpapi_base_url, policy=policy), None
        if name == "serper":
            from agent.tools.serper import SerperSearch

            return SerperSearch(key, base_url=config.serper_base_url, policy=policy), None
        from agent.tools.brave import BraveSearch

        return BraveSearch(key, base_url=config.brave_base_url, policy=policy), None
    if name == "searxng":
        if not config.searxng_base_url:
            return (
                None,
                f"SEARXNG_BASE_URL is not set: text search via searxng is off; set it or --searxng-base-url, {alternatives}",
            )
        from agent.tools.searxng import SearxngSearch

        return SearxngSearch(config.searxng_base_url, policy=policy), None
    if name == "local":
        if not config.corpus_path:
            return (
                None,
                "no local corpus: set --corpus PATH (LOCAL_CORPUS_PATH), built with `python -m agent search build-corpus docs.jsonl PATH`",
            )
        from agent.tools.local_corpus import LocalCorpusSearch

        return LocalCorpusSearch(config.corpus_path, page_chars=config.page_max_chars), None
    raise ValueError(f"unknown text search provider {name!r}")


def _auto_text(config: ToolConfig, environ: Mapping[str, str]) -> str | None:
    for name in ("serpapi", "serper", "brave"):
        if _key(name, environ):
            return name
    if config.searxng_base_url:
        return "searxng"
    if config.corpus_path:
        return "local"
    return None


def build_text_search(
    config: ToolConfig, summariser: Summariser, cache: ToolCache | None, environ: Mapping[str, str]
) -> tuple[TextSearchTool | None, str | None]:
    name = config.text_search
    if name == "off":
        return None, "text search is off (--text-search off)"
    if name == "replay":
        if cache is None:
            return (
                None,
                "replay needs the tool cache: set --tool-cache PATH (TOOL_CACHE) to the cache a live run recorded",
            )
        return ReplayTextSearch(cache), None
    if name == "auto":
        name = _auto_text(config, environ)
        if name is None:
            return None, (
                "no text search provider is configured: set SERPAPI_API_KEY, SERPER_API_KEY or BRAVE_API_KEY, "
                "or SEARXNG_BASE_URL for a SearXNG instance, or --corpus PATH for a local corpus"
            )
    provider, why = _text_provider(config, name, environ)
    if provider is None:
        return None, why
    # Local documents carry their text; there is nothing to fetch.
    fetcher = (
        PageFetcher(HttpClient("pages", config.page_policy()), max_chars=config.page_max_chars)
        if config.fetch_pages and name != "local"
        else None
    )
    tool: TextSearchTool = WebTextSearch(
        provider, fetcher=fetcher, summariser=summariser, top_k=config.top_k, candidates=config.candidates
    )
    if cache is not None:
        settings = {"top_k": config.top_k, "summariser": summariser.name, "fetch_pages": fetcher is not None}
        tool = CachedTextSearch(tool, cache, settings=settings)
    return tool, None


def build_image_search(
    config: ToolConfig, summariser: Summariser, cache: ToolCache | None, environ: Mapping[str, str]
) -> tuple[ImageSearchTool | None, str | None]:
    from agent.tools.image_search import ImagePublisher, ReverseImageSearch

    name = config.image_search
    if name == "off":
        return None, "image search is off (--image-search off)"
    if name == "replay":
        if cache is None:
            return (
                None,
                "replay needs the tool cache: set --tool-cache PATH (TOOL_CACHE) to the cache a live run recorded",
            )
        return ReplayImageSearch(cache), None
    lens_ready = bool(_key("serpapi", environ) and config.public_base_url)
    if name == "auto":
        name = "serpapi" if lens_ready else "cloud_vision" if _key("cloud_vision", environ) else ""
        if not name:
            return None, (
                "no reverse image search provider is configured: set CLOUD_VISION_API_KEY (takes image bytes), "
                "or SERPAPI_API_KEY together with PUBLIC_BASE_URL (Google Lens fetches crops from a public URL)"
            )
    policy = config.api_policy()
    if name == "serpapi":
        if not _key("serpapi", environ):
            return (
                None,
                "SERPAPI_API_KEY is not set: image search via Google Lens is off; set it or choose --image-search cloud_vision",
            )
        if not config.public_base_url:
            return None, (
                f"PUBLIC_BASE_URL is not set: Google Lens needs crops at a public URL; serve {config.crop_dir} publicly and set "
                "--public-base-url (PUBLIC_BASE_URL) to its address, or choose --image-search cloud_vision"
            )
        from agent.tools.serpapi import SerpApiLens

        provider = SerpApiLens(
            _key("serpapi", environ),
            ImagePublisher(config.crop_dir, config.public_base_url),
            base_url=config.serpapi_base_url,
            policy=policy,
        )
    else:
        if not _key("cloud_vision", environ):
            return (
                None,
                "CLOUD_VISION_API_KEY is not set: image search via Cloud Vision is off; set it or choose --image-search serpapi",
            )
        from agent.tools.cloud_vision import CloudVisionWebDetection

        provider = CloudVisionWebDetection(
            _key("cloud_vision", environ), base_url=config.cloud_vision_base_url, policy=policy
        )
    tool: ImageSearchTool = ReverseImageSearch(provider, summariser=summariser, top_k=config.top_k)
    if cache is not None:
        tool = CachedImageSearch(tool, cache, settings={"top_k": config.top_k, "summariser": summariser.name})
    return tool, None
