"""Shared tiny models for the GGUF tests: a byte-level BPE tokenizer trained in-test, checkpoints
for every layout case (uniform llama / qwen2, heterogeneous with attention-free and MLP-free
layers in the middle and last position, tied and untied), and a trained model whose greedy
continuation is stable enough to compare token for token."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import torch

from edgeprune.files.checkpoint import save_checkpoint
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec, LayerSpec

VOCAB = 320  # model rows; the trained tokenizer uses <= this many (the rest are padding)

TEXT = ("the cat sat on the mat. the dog sat on the log. a bird sang in the tree, 1 2 3 4 5!\n"
        "once upon a time there were 3 little pigs; they built houses of straw, sticks and bricks.\n") * 20


def make_tokenizer(out: Path, vocab: int = VOCAB) -> Path:
    """Byte-level BPE (GPT-2 style pre-tokenizer, as the refcorpus tokenizer) trained on TEXT."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TEXT], trainer)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "chat_template":
         "{% for m in messages %}{{ m['content'] }}{% endfor %}"}))
    return out


def encode(tok_dir: Path, text: str = TEXT) -> torch.Tensor:
    from tokenizers import Tokenizer

    return torch.tensor(Tokenizer.from_file(str(tok_dir / "tokenizer.json")).encode(text).ids)


def spec_of(case: str) -> ArchSpec:
    base = dict(vocab_size=VOCAB, hidden_size=64, head_dim=16, max_position_embeddings=256)
    lay = LayerSpec
    return {
        "llama-uniform-tied": ArchSpec(family="llama", layers=(lay(4, 2, 96),) * 3, tie_word_embeddings=True, **base),
        "qwen2-uniform-untied": ArchSpec(family="qwen2", layers=(lay(4, 2, 96),) * 3, tie_word_embeddings=False, **base),
        # per-layer heads/KV/FFN, attention-free layer 2, MLP-free layer 3 (middle)
        "llama-hetero-tied": ArchSpec(family="llama", layers=(lay(4, 2, 96), lay(2, 1, 64), lay(0, 0, 128),
                                                              lay(6, 3, 0), lay(4, 4, 32)),
                                      tie_word_embeddings=True, **base),
        # attention-free first layer, MLP-free last layer
        "llama-hetero-lastfree-untied": ArchSpec(family="llama", layers=(lay(0, 0, 64), lay(4, 2, 96), lay(2, 2, 0),
                                                                         lay(3, 1, 0)),
                                                 tie_word_embeddings=False, **base),
        "qwen2-hetero-untied": ArchSpec(family="qwen2", layers=(lay(4, 2, 96), lay(2, 1, 0), lay(0, 0, 64),
                                                                lay(4, 4, 32)),
                                        tie_word_embeddings=False, **base),
    }[case]


CASES = ("llama-uniform-tied", "qwen2-uniform-untied", "llama-hetero-tied", "llama-hetero-lastfree-untied",
         "qwen2-hetero-untied")


def random_model(spec: ArchSpec, seed: int = 0):
    """Random weights with logits of order 10 and non-zero biases (so a wrong permutation of
    q/k rows or biases shows up in the logits)."""
    model = build_model(spec, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.mul_(10)
    return model


def train_tiny(model, ids: torch.Tensor, steps: int = 80, seq: int = 32, lr: float = 5e-3):
    """A few AdamW steps on the repetitive TEXT (loss ~0.5): peaked, stable greedy argmaxes.
    One torch thread: on a shared 2-core machine two threads ran 7x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, ids, steps, seq, lr)
    finally:
        torch.set_num_threads(threads)


def _train(model, ids: torch.Tensor, steps: int, seq: int, lr: float):
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - seq - 1, (8,), generator=gen)
        batch = torch.stack([ids[s:s + seq] for s in starts.tolist()])
        loss = model(batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def save_case(root: Path, case: str, tok_dir: Path, model=None) -> Path:
    model = model if model is not None else random_model(spec_of(case))
    return save_checkpoint(model, root / case, tokenizer_dir=tok_dir,
                           config_extra={"bos_token_id": 0, "eos_token_id": 0},
                           meta={"source_model": "tests/teacher", "prune": {"method": "flap", "ratio": 0.5}})


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it), for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(proc, base: str, log, timeout_s: float) -> None:
    """Until `base`/models answers 200; fails naming the log's tail when the server exits or the
    time runs out."""
    import time
    import urllib.request

    import pytest

    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}: {log.read_text()[-1500:]}")
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not answer in {timeout_s} s: {log.read_text()[-1500:]}")
        time.sleep(0.25)
