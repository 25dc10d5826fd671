"""The uncut model kept on disk while it is cut, read back one layer at a time.

Reconstruction fits each kept layer towards the original's hidden states, and it walks the
original one layer at a time (`reconstruct.walk_layers`): it never needs the whole original in
memory. A deep copy held beside the model being cut doubles the weights in memory (a 1B model:
4.9 GB more); written to a safetensors file before the method runs, the original costs disk
instead, and memory only for the layer being read.

`SpilledTeacher` offers what the layer walk reads of a teacher: `spec`, `model.embed_tokens(ids)`
and `model.layers[k]` (built on first use from the file, the most recent ones cached), `eval()` /
`train()` / `training`.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from edgeprune.shape.model import DecoderLayer, EdgeLM

CACHED_LAYERS = 2  # the walk reads a layer for every calibration batch, then moves to the next


class _Embedding:
    """The original's token embedding, read from the file for each call and let go after."""

    def __init__(self, store: "SpilledTeacher"):
        self._store = store

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self._store.embedding())  # (B, T, hidden)


class _Layers:
    """`layers[k]`: original layer k, built from the file when asked for."""

    def __init__(self, store: "SpilledTeacher"):
        self._store = store
        self._cache: OrderedDict[int, DecoderLayer] = OrderedDict()

    def __len__(self) -> int:
        return self._store.spec.n_layers

    def __getitem__(self, k: int) -> DecoderLayer:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        layer = self._store.layer(k)
        self._cache[k] = layer
        while len(self._cache) > CACHED_LAYERS:
            self._cache.popitem(last=False)
        return layer


class _Backbone:
    def __init__(self, store: "SpilledTeacher"):
        self.embed_tokens = _Embedding(store)
        self.layers = _Layers(store)


class SpilledTeacher:
    """`model`'s current weights, written to `directory`/original-*.safetensors (the caller owns and
    removes the directory); nothing of `model` is referenced afterwards, so cutting it is safe."""

    def __init__(self, model: EdgeLM, directory: Path):
        from safetensors.torch import save_file

        self.spec = model.spec
        self.directory = Path(directory)
        # one file per layer (and one for the embedding): safetensors serialises a file's tensors
        # in memory before writing, so a file per layer holds one layer's bytes at a time, not a
        # second copy of the model. The walk reads the embedding and the layers, never the final
        # norm or the head.
        groups: dict[str, dict[str, torch.Tensor]] = {}
        for name, t in model.state_dict().items():
            if name.startswith("model.embed_tokens."):
                groups.setdefault("embed", {})[name] = t
            elif name.startswith("model.layers."):
                groups.setdefault(f"layer{int(name.split('.')[2])}", {})[name] = t
        for group, state in groups.items():
            # `contiguous()` copies only a view that is not
            save_file({n: t.detach().contiguous() for n, t in state.items()}, str(self._file(group)))
        self.model = _Backbone(self)
        self.training = False

    def _file(self, group: str) -> Path:
        return self.directory / f"original-{group}.safetensors"

    def embedding(self) -> torch.Tensor:
        """The original's token embedding (vocab, hidden), read from its file."""
        from safetensors import safe_open

        with safe_open(str(self._file("embed")), framework="pt") as f:
            return f.get_tensor("model.embed_tokens.weight")

    def layer(self, k: int) -> DecoderLayer:
        """Original layer k as a module of its own (its weights read from its file)."""
        from safetensors import safe_open

        with torch.device("meta"):
            layer = DecoderLayer(self.spec, self.spec.layers[k])
        prefix = f"model.layers.{k}."
        with safe_open(str(self._file(f"layer{k}")), framework="pt") as f:
            state = {n[len(prefix):]: f.get_tensor(n) for n in f.keys()}
        layer.load_state_dict(state, assign=True, strict=True)
        return layer.eval()

    def eval(self) -> "SpilledTeacher":
        return self

    def train(self, mode: bool = True) -> "SpilledTeacher":
        return self

    def __repr__(self) -> str:
        return f"SpilledTeacher({self.directory}, {self.spec.n_layers} layers)"


def spill(model: EdgeLM, directory: Any) -> SpilledTeacher:
    return SpilledTeacher(model, Path(directory))


__all__ = ["SpilledTeacher", "spill", "CACHED_LAYERS"]
