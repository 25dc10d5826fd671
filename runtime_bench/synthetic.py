"""Random-weight GGUF files of a given ArchSpec: latency depends on shapes and types, not on the
weights, so the harness can be tested and a device's speed measured (e.g. a SmolLM-135M shape at
Q4_0) before or without a trained model. Not a model export: `edgeprune.export` writes real models.

The file is laid out as export lays out a real model of that spec (arch, hyper-parameters, tensor
names, q/k permutation, zero stand-ins for removed blocks), with a byte-level SentencePiece-style
vocabulary (<unk>, <s>, </s>, the 256 <0xXX> byte tokens, then fillers) so llama.cpp loads it;
every matrix is stored at `qtype`, 1-D tensors at F32.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeprune.base.errors import BenchError

if TYPE_CHECKING:
    from edgeprune.shape.spec import ArchSpec


def _vocab(n: int) -> tuple[list[str], list[float], list[int]]:
    from gguf.constants import TokenType

    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    if n < len(toks):
        raise BenchError(f"vocab_size {n} too small for a synthetic GGUF: need >= {len(toks)} "
                         "(3 control + 256 byte tokens)")
    toks += [f"t{i}" for i in range(n - len(toks))]
    types += [TokenType.NORMAL] * (n - len(types))
    return toks, [0.0] * n, [int(t) for t in types]


def random_state(spec: ArchSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """HF-named random tensors shaped as EdgeLM(spec) holds them (shapes read off a meta-device
    model, so the one shape spec decides them): matrices ~N(0, 0.02), norms 1, biases 0."""
    import torch

    from edgeprune.shape.model import EdgeLM

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in EdgeLM(spec).state_dict().items()}
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        if len(shape) == 2:
            out[name] = rng.standard_normal(shape, dtype=np.float32) * 0.02
        else:
            out[name] = (np.zeros if name.endswith(".bias") else np.ones)(shape, dtype=np.float32)
    return out


def write_random_gguf(spec: ArchSpec, path: Path, qtype: str = "Q8_0", seed: int = 0) -> Path:
    """Write a GGUF with random weights shaped by `spec`, matrices at GGML type `qtype`. Arch,
    hyper-parameters and tensor layout are export's (`gguf_layout`): uniform specs as plain
    llama / qwen2, heterogeneous ones as deci, so llama.cpp loads both."""
    import gguf
    from gguf.constants import GGMLQuantizationType, LlamaFileType

    from edgeprune.base.atomic_io import atomic_path
    from edgeprune.export.gguf_writer import add_hparams, gguf_tensors
    from edgeprune.files.gguf_format import gguf_layout

    try:
        gtype = GGMLQuantizationType[qtype.upper()]
        ftype = LlamaFileType[f"MOSTLY_{qtype.upper()}"] if qtype.upper() != "F32" else LlamaFileType.ALL_F32
    except KeyError:
        raise BenchError(f"unknown GGML type {qtype!r} (try Q4_0, Q8_0, F16)") from None
    toks, scores, types = _vocab(spec.vocab_size)
    layout = gguf_layout(spec)
    path = Path(path)
    with atomic_path(path) as tmp:  # atomic: readers never see a half-written file
        w = gguf.GGUFWriter(str(tmp), layout.arch_name)
        w.add_name("edgeprune-synthetic")
        add_hparams(w, spec, layout)
        w.add_file_type(int(ftype))
        w.add_tokenizer_model("llama")
        w.add_token_list(toks)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
        for name, arr in gguf_tensors(spec, random_state(spec, seed), layout):
            if arr.ndim == 2 and gtype != GGMLQuantizationType.F32:  # matrices at qtype, vectors at F32
                w.add_tensor(name, gguf.quants.quantize(arr, gtype), raw_dtype=gtype)
            else:
                w.add_tensor(name, arr)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return path
