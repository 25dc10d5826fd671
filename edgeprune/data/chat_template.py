"""A model's chat template: where it is stored beside the tokenizer, and how a conversation is
rendered with it (transformers' conventions, so the prompt is the one the model was tuned on).

The template is the tokenizer_config's `chat_template` or, as transformers >= 4.43 saves it,
`chat_template.jinja` beside it; a GGUF input carries it in its metadata and its converted
checkpoint directory gets both (edgeprune/files/gguf_tokenizer_in.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence, Union


PathLike = Union[str, os.PathLike]

# used when a model carries no chat template (our embedded teacher, base models)
PLAIN_CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
                       "{% if add_generation_prompt %}Assistant:{% endif %}")


def read_chat_template(tokenizer_dir: PathLike) -> Optional[str]:
    """The chat template saved with a tokenizer, or None when it has none."""
    d = Path(tokenizer_dir)
    cfg_path = d / "tokenizer_config.json"
    tpl = None
    if cfg_path.is_file():
        try:
            tpl = json.loads(cfg_path.read_text()).get("chat_template")
        except (ValueError, UnicodeDecodeError, AttributeError):
            tpl = None
    if not tpl and (d / "chat_template.jinja").is_file():
        tpl = (d / "chat_template.jinja").read_text()
    return tpl if isinstance(tpl, str) and tpl.strip() else None


def render_chat(template: Optional[str], messages: Sequence[dict[str, str]], bos: str = "", eos: str = "",
                add_generation_prompt: bool = True, source: str = "the model") -> str:
    """The prompt for `messages` from a Jinja chat template (transformers' conventions: a sandbox,
    trim_blocks/lstrip_blocks, `add_generation_prompt`, `bos_token`, `eos_token`), rendered within
    edgeprune/data/template_budget.py's budget; ChatTemplateError names `source` (the model's path)."""
    from edgeprune.data.template_budget import OUTPUT_BASE, budgeted_render

    messages = list(messages)
    conversation = sum(len(str(m.get("content", ""))) for m in messages)
    return budgeted_render(template or PLAIN_CHAT_TEMPLATE,
                           {"messages": messages, "add_generation_prompt": add_generation_prompt,
                            "bos_token": bos, "eos_token": eos},
                           source, OUTPUT_BASE + 2 * conversation)
