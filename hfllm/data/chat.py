"""Chat templates: which one a tokenizer uses, and the one function that turns a chat into text.

Instruction data (preprocess, finetune) and prompts (generate) both go through `render_chat` with
the template saved in the tokenizer, so a fine-tuned model is prompted exactly as it was trained.
"""

from __future__ import annotations

import json
from typing import Any

from hfllm.errors import InputError
from hfllm.output import log

ROLES = ("system", "user", "assistant")

# ChatML (OpenAI, Qwen, many fine-tunes): each turn is <|im_start|>role\n...<|im_end|>\n.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# For small models trained here from scratch: headings in plain text, the tokenizer's EOS ends a response.
PLAIN = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### User:\\n' + message['content'] + '\\n\\n' }}"
    "{% else %}{{ '### Assistant:\\n' + message['content'] + eos_token + '\\n\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif %}"
)
# name -> (template, special tokens it needs in the vocabulary)
TEMPLATES: dict[str, tuple[str, list[str]]] = {
    "chatml": (CHATML, ["<|im_start|>", "<|im_end|>"]),
    "plain": (PLAIN, []),
}


def setup_chat_template(tokenizer: Any, choice: str, where: str) -> dict[str, Any]:
    """Give `tokenizer` the chat template `choice` names (auto, own, chatml, plain); return what was done.

    auto keeps the tokenizer's own template and falls back to chatml. A named template's special
    tokens are added when missing: the vocabulary then grows, and a model fine-tuned on this data
    needs its embeddings resized to len(tokenizer) (hfllm.models.causal.fit_embeddings).
    """
    own = tokenizer.chat_template
    if choice == "own" and not own:
        raise InputError(
            f"{where}: the tokenizer has no chat template (chat_template: own)",
            "set chat_template: chatml (or plain), or auto to fall back to chatml",
        )
    name = "own" if choice in ("own", "auto") and own else "chatml" if choice == "auto" else choice
    added: list[str] = []
    if name != "own":
        template, needed = TEMPLATES[name]
        vocab = tokenizer.get_vocab()
        added = [token for token in needed if token not in vocab]
        if added:
            tokenizer.add_tokens(added, special_tokens=True)
            log.info("added the %s tokens %s to the tokenizer (vocabulary %d)", name, added, len(tokenizer))
        tokenizer.chat_template = template
    return {"name": name, "added_tokens": added}


def render_chat(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    """Return the text of a chat under the tokenizer's chat template.

    add_generation_prompt ends the text with the opening of an assistant turn: what a prompt at
    generation time is, and the prefix of a training example before its response.
    """
    if not tokenizer.chat_template:
        raise InputError("the tokenizer has no chat template")
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """Return the chat's text and the character spans of its assistant turns (what the model learns).

    Each span runs from the end of the text rendered up to that turn (with the generation prompt)
    to the end of the text rendered through it, so it holds the response and whatever the template
    closes a turn with (<|im_end|>, EOS). Templates that rewrite earlier turns are refused.
    """
    text = render_chat(tokenizer, messages, add_generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render_chat(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        through = render_chat(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not text.startswith(through) or not through.startswith(before):
            raise ValueError(
                "the chat template does not render a conversation turn by turn (an earlier turn "
                "changes when a later one is added), so the response tokens cannot be found"
            )
        spans.append((len(before), len(through)))
    return text, spans


def parse_messages(value: Any) -> list[dict[str, str]]:
    """Return a chat as a list of {role, content}; raise ValueError saying what is wrong with it.

    Accepts the list itself or its JSON text; roles are system, user and assistant.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"messages is not a list (nor JSON text of one: {exc.msg})") from None
    if not isinstance(value, list) or not value:
        raise ValueError("messages must be a non-empty list of {role, content} objects")
    chat = []
    for i, message in enumerate(value, start=1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"message {i} is not a {{role, content}} object")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise ValueError(f"message {i} has role {role!r}; the roles are {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise ValueError(f"message {i}: content must be a string, not {type(content).__name__}")
        chat.append({"role": role, "content": content})
    return chat
