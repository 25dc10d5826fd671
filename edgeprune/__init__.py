"""edgeprune: prune small causal LMs structurally, recover them, ship GGUF/ONNX to edge devices.

The core package holds what every stage shares: the shape spec (`edgeprune.spec`), the model
(`edgeprune.model`), checkpoints, data, errors and the CLI. Stages live in `edgeprune.prune`,
`edgeprune.train`, `edgeprune.export`, `edgeprune.runtime_bench` and `edgeprune.devices`.
"""

__version__ = "0.1.0"

from edgeprune.errors import EdgepruneError  # noqa: E402
from edgeprune.spec import ArchSpec, LayerSpec  # noqa: E402

__all__ = ["ArchSpec", "LayerSpec", "EdgepruneError", "__version__"]
