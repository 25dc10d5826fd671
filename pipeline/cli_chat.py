"""`edgeprune chat MODEL`: talk to a model through its own chat template.

Reads one user message per line from stdin (an empty line or EOF ends the chat), or answers a
single `--prompt`. Works on an HF dir (PyTorch), a GGUF (llama.cpp, whose chat template comes
from the file's metadata) and an ONNX file (onnxruntime, tokenizer beside it). A model without a
chat template (a base model, our embedded teacher) gets a plain "User:/Assistant:" prompt, said
once on stderr.
"""

from __future__ import annotations

import argparse
import sys
from edgeprune.base.cli_flags import model_help


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edgeprune.pipeline.cli_generate import add_sampling_arguments

    p.add_argument("model", metavar="MODEL", help=model_help("the model to chat with", extra=("an .onnx file",)))
    p.add_argument("--prompt", "-p", default=None, help="one message, answered once (default: read lines from stdin)")
    p.add_argument("--system", default=None, help="system message put first")
    add_sampling_arguments(p)


def run(args: argparse.Namespace) -> int:
    from edgeprune.pipeline.cli_generate import check_sampling
    from edgeprune.pipeline.generate import open_lm

    check_sampling(args)
    lm = open_lm(args.model)
    if not lm.has_chat_template:
        sys.stderr.write(f"{args.model} has no chat template: using a plain 'User:/Assistant:' prompt\n")
    messages = [{"role": "system", "content": args.system}] if args.system else []
    interactive = args.prompt is None and sys.stdin.isatty()
    lines = [args.prompt] if args.prompt is not None else None
    while True:
        if lines is not None:
            if not lines:
                break
            text = lines.pop(0)
        else:
            if interactive:
                sys.stderr.write("you> ")
                sys.stderr.flush()
            text = sys.stdin.readline()
            if not text or not text.strip():
                break
            text = text.rstrip("\n")
        messages.append({"role": "user", "content": text})
        res = lm.complete(lm.chat_prompt(messages), max_new_tokens=args.max_new_tokens,
                          temperature=args.temperature, top_k=args.top_k, seed=args.seed)
        answer = res.text.strip()
        messages.append({"role": "assistant", "content": answer})
        sys.stdout.write(("model> " if interactive else "") + answer + "\n")
        sys.stdout.flush()
        if res.context is not None:  # the answer is cut where the conversation filled the context
            sys.stderr.write(f"(stopped at the model's context of {res.context:,} tokens)\n")
    return 0
