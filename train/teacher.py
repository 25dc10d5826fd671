"""Distillation teacher: loaded like any checkpoint, refused when it speaks another vocabulary.

Teacher and student may differ in every width (that is the point of recovering a pruned
model from its unpruned parent), but KL on logits only means something when logit i is the
same token for both: same tokenizer, same vocabulary size.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from edgeprune.base.errors import TrainError
from edgeprune.base.hashing import digest
from edgeprune.shape.spec import ArchSpec

if TYPE_CHECKING:
    import torch

    from edgeprune.shape.model import EdgeLM

log = logging.getLogger(__name__)


def tokenizer_fingerprint(directory: Optional[Path]) -> Optional[str]:
    """sha256 prefix of tokenizer.json, as edgeprune.data.tokens.Tokenizer.fingerprint computes it."""
    if directory is None:
        return None
    f = Path(directory) / "tokenizer.json"
    return digest(f.read_bytes()) if f.is_file() else None


def check_same_vocabulary(student_spec: ArchSpec, student_tok: Optional[str], teacher_spec: ArchSpec,
                          teacher_tok: Optional[str], teacher_name: str) -> None:
    if student_tok and teacher_tok and student_tok != teacher_tok:
        raise TrainError(f"teacher {teacher_name} uses another tokenizer (tokenizer.json {teacher_tok} vs the "
                         f"student's {student_tok}); distil only from a model with the student's tokenizer")
    if teacher_spec.vocab_size != student_spec.vocab_size:
        raise TrainError(f"teacher {teacher_name} has a vocabulary of {teacher_spec.vocab_size} tokens, the "
                         f"student {student_spec.vocab_size}; distil only from a model with the student's "
                         f"tokenizer")
    if not (student_tok and teacher_tok):
        log.warning("cannot compare tokenizers (a tokenizer.json is missing); vocabulary sizes match (%d)",
                    student_spec.vocab_size)


def load_teacher(path: str, student_spec: ArchSpec, student_tokenizer_dir: Optional[Path],
                 dtype: Optional[torch.dtype] = None) -> EdgeLM:
    """The teacher's EdgeLM after checking it shares the student's vocabulary."""
    import torch

    from edgeprune.files.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, dtype=dtype or torch.float32)
    check_same_vocabulary(student_spec, tokenizer_fingerprint(student_tokenizer_dir), ckpt.spec,
                          tokenizer_fingerprint(ckpt.path), str(path))
    return ckpt.model
