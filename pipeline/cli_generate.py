"""`edgeprune generate MODEL --prompt TEXT`: continue a prompt with any model edgeprune writes.

    edgeprune generate dist/model --prompt "Once upon a time"              # PyTorch
    edgeprune generate dist/gguf/model-Q4_0.gguf --prompt "Once upon a time"   # llama.cpp
    edgeprune generate dist/onnx/model-int8.onnx --prompt "Once upon a time"   # onnxruntime

Greedy by default (the same text from every runtime for the same weights); --temperature > 0
samples. The continuation goes to stdout; a one-line summary (runtime, tokens) to stderr.
"""

from __future__ import annotations

import argparse
import sys
from edgeprune.base.cli_flags import model_help


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    # --max-tokens: the OpenAI / llama.cpp spelling of the same limit
    p.add_argument("--max-new-tokens", "--max-tokens", "-n", type=int, default=64,
                   help="tokens to generate at most (default 64)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    p.add_argument("--top-k", type=int, default=40, help="sample among the k likeliest tokens (default 40)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help=model_help("the model to continue the prompt with", extra=("an .onnx file",)))
    p.add_argument("--prompt", "-p", required=True, help="text to continue ('-' reads it from stdin)")
    add_sampling_arguments(p)


def check_sampling(args: argparse.Namespace) -> None:
    from edgeprune.base.errors import EdgepruneError

    if args.max_new_tokens < 1 or args.temperature < 0 or args.top_k < 0:
        raise EdgepruneError(f"need --max-new-tokens >= 1, --temperature >= 0, --top-k >= 0 (got "
                             f"{args.max_new_tokens}, {args.temperature}, {args.top_k})")


def run(args: argparse.Namespace) -> int:
    from edgeprune.pipeline.generate import open_lm

    check_sampling(args)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    lm = open_lm(args.model)
    res = lm.complete(prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                      top_k=args.top_k, seed=args.seed)
    sys.stdout.write(prompt + res.text + "\n")
    sys.stderr.write(f"[{res.runtime}] {res.prompt_tokens} prompt tokens, {res.new_tokens} generated\n")
    if res.context is not None:
        sys.stderr.write(f"stopped at the model's context of {res.context:,} tokens "
                         f"(-n asked for {args.max_new_tokens:,} new ones)\n")
    return 0
