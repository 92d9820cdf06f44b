"""Any OpenAI-compatible chat endpoint (llama.cpp's server, Ollama, vLLM, a hosted API).

Each request carries the text around the sentences (the whole transcript when it fits) for
context, the glossary, and the sentences numbered; the reply must be a JSON object with exactly
those numbers as keys and a non-empty translation for each. The request asks for that shape as
a JSON schema (structured output), or, where the server refuses ``response_format``, in words.
For a language with its own script (Hindi, Tamil, ...), each translation must be written in it:
the schema says so with a pattern, which servers that compile schemas into grammars (llama.cpp)
enforce while decoding, so a small model cannot drift into English or another script. A failed
or invalid reply (one that loops, by the clean stage's rule, is invalid) is retried, warmer; a
batch that keeps failing is split in two, down to one sentence, which is left untranslated (an
empty string) if it keeps failing alone.
"""

import json
import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from cpwhisperx import translation
from cpwhisperx.errors import CpwError
from cpwhisperx.hallucinations import REPEAT_LIMIT
from cpwhisperx.languages import LANGUAGES
from cpwhisperx.text import scripts

log = logging.getLogger(__name__)

ATTEMPTS = 3  # per batch, before it is split
# Each attempt's sampling temperature: a model that looped at 0 loops again at 0.
TEMPERATURES = (0.0, 0.5, 0.9)
BACKOFF_S = 1.0  # doubled after each failed attempt
# Chat-template markers a model leaked into its text (<|im_end|>, <end_of_turn>, ...).
_TEMPLATE = re.compile(r"<\|[^|<>]*\|>|<(start|end)_of_turn>")


class InvalidReply(Exception):
    """A reply that is not the JSON object asked for."""


class LlmTranslator:
    name = "llm"
    batch_size = 12

    def __init__(self, *, base_url: str, model: str, api_key: str = "",
                 glossary: Mapping[str, str] | None = None, timeout: float = 120.0,
                 loop_limit: int | None = REPEAT_LIMIT) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model or "default"
        self.api_key = api_key
        self.glossary = dict(glossary or {})
        self.timeout = timeout
        self.loop_limit = loop_limit  # the clean stage's (None: its loop rule is off)
        self.structured = True  # until the server refuses response_format

    def translate(self, texts: Sequence[str], *, source: str, target: str,
                  context: str) -> list[str]:
        for attempt in range(ATTEMPTS):
            try:
                return self._ask(texts, source=source, target=target, context=context,
                                 temperature=TEMPERATURES[attempt])
            except InvalidReply as exc:
                log.warning("invalid reply for %d sentences (attempt %d): %s", len(texts),
                            attempt + 1, exc)
                if attempt + 1 < ATTEMPTS:
                    time.sleep(BACKOFF_S * 2 ** attempt)
        if len(texts) == 1:  # left untranslated: the stage counts and reports it
            log.warning("no valid translation of %r after %d attempts", texts[0], ATTEMPTS)
            return [""]
        half = len(texts) // 2
        return [*self.translate(texts[:half], source=source, target=target, context=context),
                *self.translate(texts[half:], source=source, target=target, context=context)]

    def _ask(self, texts: Sequence[str], *, source: str, target: str, context: str,
             temperature: float) -> list[str]:
        ids = [str(i + 1) for i in range(len(texts))]
        lines = "\n".join(f"{i}: {text}" for i, text in zip(ids, texts, strict=True))
        glossary = "".join(f"\n{term} = {said}" for term, said in self.glossary.items())
        system = (f"You translate subtitles from {_name(source)} into {_name(target)}. "
                  "Translate each numbered line on its own, faithfully and concisely, keeping "
                  "names and numbers. Reply with a JSON object only: each line's number as a "
                  f"key, its {_name(target)} translation as the value.")
        user = (f"Context (the surrounding transcript, not to translate):\n{context}\n\n"
                + (f"Glossary (always translate these terms so):{glossary}\n\n" if glossary
                   else "")
                + f"Lines to translate:\n{lines}")
        body: dict[str, Any] = {
            "model": self.model, "temperature": temperature,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            # Room for the longest translations accepted at a token a character, and the JSON.
            "max_tokens": sum(_longest(t) + 16 for t in texts) + 16}
        if self.structured:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "translations", "strict": True, "schema": _schema(ids, texts, target)}}
        reply = self._post(body)
        try:
            content = reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise InvalidReply(f"no message in {str(reply)[:200]}") from None
        return _parse(content, ids, texts, source=source, target=target,
                      loop_limit=self.loop_limit)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(),
                                         headers=headers, method="POST")
        for attempt in range(ATTEMPTS):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:300]
                if exc.code in (401, 403):
                    raise CpwError(f"the LLM endpoint {self.url} refused the request "
                                   f"(HTTP {exc.code}): set LLM_API_KEY") from None
                if exc.code == 400 and "response_format" in body and self.structured:
                    log.warning("the server refused response_format (%s): asking in words",
                                detail)
                    self.structured = False
                    return self._post({k: v for k, v in body.items() if k != "response_format"})
                if exc.code not in (408, 429) and exc.code < 500:
                    raise CpwError(f"the LLM endpoint {self.url} answered HTTP {exc.code}: "
                                   f"{detail or exc.reason}; check LLM_BASE_URL and LLM_MODEL"
                                   ) from None
                why = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                why = str(getattr(exc, "reason", exc))
            except json.JSONDecodeError:
                raise InvalidReply("the server's answer is not JSON") from None
            log.warning("LLM request failed (%s), attempt %d of %d", why, attempt + 1, ATTEMPTS)
            if attempt + 1 < ATTEMPTS:
                time.sleep(BACKOFF_S * 2 ** attempt)
        raise CpwError(f"the LLM endpoint {self.url} failed {ATTEMPTS} times ({why}): check "
                       "that the server is running and its log, or set LLM_BASE_URL")


def _name(code: str) -> str:
    return LANGUAGES.get(code, code).title()


def _longest(source: str) -> int:
    """The longest translation accepted: a small model must not run on inside one string."""
    return 3 * len(source) + 20


def _schema(ids: list[str], texts: Sequence[str], target: str) -> dict[str, Any]:
    """Exactly these keys, each a non-empty string of bounded length, in the target's script."""
    properties = {}
    for i, text in zip(ids, texts, strict=True):
        line = {"type": "string", "minLength": 1, "maxLength": _longest(text)}
        if pattern := scripts.line_pattern(target, longest=_longest(text)):
            line["pattern"] = pattern
        properties[i] = line
    return {"type": "object", "additionalProperties": False, "required": ids,
            "properties": properties}


def _parse(content: str, ids: list[str], texts: Sequence[str], *, source: str, target: str,
           loop_limit: int | None) -> list[str]:
    text = content.strip()
    if text.startswith("```"):  # a JSON block in Markdown, as chat models like to write it
        text = text.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidReply(f"not JSON ({exc.msg}): {content[:200]!r}") from None
    if not isinstance(data, dict) or set(data) != set(ids):
        raise InvalidReply(f"expected the keys {ids}, got {content[:200]!r}")
    out = [" ".join(str(data[i]).split()) for i in ids]
    for text, original in zip(out, texts, strict=True):
        _, loop = translation.unloop(text, language=target, source=original,
                                     source_language=source, limit=loop_limit)
        if loop:
            raise InvalidReply(f"a loop, {loop}: {text[:200]!r}")
        if not text or _TEMPLATE.search(text) or len(text) > _longest(original):
            raise InvalidReply(f"an empty, overlong or garbled translation: {text[:200]!r}")
        if not scripts.in_own_script(text, target):
            raise InvalidReply(f"not written in {target}'s script: {text[:200]!r}")
    return out

