"""OpenAI's response objects for one request: chat (``chat.completion`` and its chunks) or raw completion
(``text_completion``), whole or streamed, with tool calls and log-probabilities in OpenAI's shapes."""

from __future__ import annotations

import time
import uuid
from typing import Any

from app.core.llm.sampling import TokenLogprob
from app.core.llm.tools import CallStream, ToolCall, parse_calls
from app.core.serve.generation import Generation
from app.core.serve.requests import GenerationRequest

Payload = dict[str, Any]


class ResponseShape:
    """Builds the objects sent for one request. Streamed, it is fed the reply's text piece by piece and holds
    back what may be the start of a tool call until the call is read whole."""

    def __init__(self, model: str, request: GenerationRequest) -> None:
        self.model = model
        self.request = request
        self.chat = request.prompt is None
        self.id = f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        tools = request.tools
        self._calls_possible = tools is not None and tools.choice.mode != "none"
        self._call_stream = CallStream(tools.format) if tools is not None and self._calls_possible else None
        self._text_offset = 0  # where the next token's text starts (completions' text_offset)

    # -- whole ---------------------------------------------------------------------------------------------

    def whole(self, text: str, generation: Generation) -> Payload:
        logprobs = generation.new_logprobs() if self.request.logprobs else None
        if not self.chat:
            choice: Payload = {
                "index": 0,
                "text": text,
                "logprobs": self._completion_logprobs(logprobs) if logprobs is not None else None,
                "finish_reason": generation.finish_reason,
            }
            return self._object("text_completion", [choice]) | {"usage": generation.usage()}
        content, calls = self._calls_in(text)
        message: Payload = {"role": "assistant", "content": content}
        finish = generation.finish_reason
        if calls:
            message = {
                "role": "assistant",
                "content": self._beside_calls(content),
                "tool_calls": _tool_calls(calls),
            }
            finish = _finish_with_calls(finish)
        choice = {
            "index": 0,
            "message": message,
            "logprobs": _chat_logprobs(logprobs) if logprobs is not None else None,
            "finish_reason": finish,
        }
        return self._object("chat.completion", [choice]) | {"usage": generation.usage()} | self._sources()

    def _beside_calls(self, content: str) -> str | None:
        """The text that goes with calls: none when calls were forced (all the grammar let through besides
        them is the start of one more call, cut by max_tokens)."""
        tools = self.request.tools
        if tools is not None and tools.forced:
            return None
        return content or None

    def _calls_in(self, text: str) -> tuple[str, list[ToolCall]]:
        tools = self.request.tools
        if tools is None or not self._calls_possible:
            return text, []
        content, calls = parse_calls(text, tools.format)
        if not calls:
            return text, []
        return content, calls if tools.parallel else calls[:1]

    # -- streamed ------------------------------------------------------------------------------------------

    def opening(self) -> list[Payload]:
        return [self._chunk({"role": "assistant", "content": ""})] if self.chat else []

    def pieces(self, text: str, generation: Generation) -> list[Payload]:
        """The chunks to send for a piece of the reply (none while a possible tool call is held back)."""
        logprobs = generation.new_logprobs() if self.request.logprobs else None
        if not self.chat:
            return [self._chunk({"content": text}, logprobs=logprobs)]
        if self._call_stream is not None:
            text = self._call_stream.feed(text)
        if not text and not logprobs:
            return []
        return [self._chunk({"content": text}, logprobs=logprobs)]

    def closing(self, generation: Generation) -> list[Payload]:
        """The chunks that end the stream: text held back, the tool calls, the finish reason, the usage."""
        chunks: list[Payload] = []
        finish = generation.finish_reason
        left = generation.new_logprobs() if self.request.logprobs else []
        if left:  # tokens whose text was held back until the end
            chunks.append(self._chunk({"content": ""} if self.chat else {}, logprobs=left))
        if self._call_stream is not None:
            rest, calls = self._call_stream.finish()
            tools = self.request.tools
            if calls and tools is not None and not tools.parallel:
                calls = calls[:1]
            if calls:
                rest = self._beside_calls(rest) or ""
            if rest:
                chunks.append(self._chunk({"content": rest}))
            if calls:
                finish = _finish_with_calls(finish)
                for index, call in enumerate(_tool_calls(calls)):
                    chunks.append(self._chunk({"tool_calls": [call | {"index": index}]}))
        chunks.append(self._chunk({}, finish) | self._sources())
        if self.request.include_usage:
            kind = "chat.completion.chunk" if self.chat else "text_completion"
            chunks.append(self._object(kind, []) | {"usage": generation.usage()})
        return chunks

    # -- pieces of the objects -----------------------------------------------------------------------------

    def _sources(self) -> Payload:
        """Our extension: the library passages a request that named libraries was answered from (in the whole
        response, or in the stream's finishing chunk); nothing for any other request."""
        return {"sources": self.request.sources} if self.request.libraries else {}

    def _object(self, kind: str, choices: list[Payload]) -> Payload:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _chunk(
        self, delta: Payload, finish_reason: str | None = None, *, logprobs: list[TokenLogprob] | None = None
    ) -> Payload:
        if self.chat:
            choice: Payload = {
                "index": 0,
                "delta": delta,
                "logprobs": _chat_logprobs(logprobs) if logprobs else None,
                "finish_reason": finish_reason,
            }
            return self._object("chat.completion.chunk", [choice])
        choice = {
            "index": 0,
            "text": delta.get("content", ""),
            "logprobs": self._completion_logprobs(logprobs) if logprobs else None,
            "finish_reason": finish_reason,
        }
        return self._object("text_completion", [choice])

    def _completion_logprobs(self, entries: list[TokenLogprob]) -> Payload:
        """The legacy completions shape: parallel lists of tokens, their log-probabilities, the alternatives
        and where each token's text starts."""
        if self.request.echo and self._text_offset == 0 and isinstance(self.request.prompt, str):
            self._text_offset = len(self.request.prompt)
        offsets = []
        for entry in entries:
            offsets.append(self._text_offset)
            self._text_offset += len(_text(entry.token))
        return {
            "tokens": [_text(entry.token) for entry in entries],
            "token_logprobs": [entry.logprob for entry in entries],
            # The sampled token is always among the alternatives, as OpenAI's completions give them.
            "top_logprobs": [
                {_text(token): logprob for token, logprob in entry.top} | {_text(entry.token): entry.logprob}
                for entry in entries
            ],
            "text_offset": offsets,
        }


def _finish_with_calls(finish: str) -> str:
    """OpenAI's reason for a reply that made calls: "tool_calls", unless max_tokens cut it ("length")."""
    return "length" if finish == "length" else "tool_calls"


def _chat_logprobs(entries: list[TokenLogprob]) -> Payload:
    return {
        "content": [
            _token_entry(entry.token, entry.logprob)
            | {"top_logprobs": [_token_entry(token, logprob) for token, logprob in entry.top]}
            for entry in entries
        ],
        "refusal": None,
    }


def _token_entry(token: bytes, logprob: float) -> Payload:
    return {"token": _text(token), "logprob": logprob, "bytes": list(token)}


def _text(token: bytes) -> str:
    return token.decode("utf-8", "replace")


def _tool_calls(calls: list[ToolCall]) -> list[Payload]:
    return [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        for call in calls
    ]
