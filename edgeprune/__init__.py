"""edgeprune: prune small causal LMs structurally, recover them, ship GGUF/ONNX to edge devices.

The core package holds what every stage shares: the shape spec (`edgeprune.shape.spec`), the model
(`edgeprune.shape.model`), checkpoints, data, errors and the CLI entry; it imports no stage. Stages
live in `edgeprune.devices`, `edgeprune.export`, `edgeprune.runtime_bench`, `edgeprune.prune` and
`edgeprune.train` (each importing only those before it), and `edgeprune.pipeline` combines them
(ship, compare, the prune verb); docs/DESIGN.md draws the order.
"""

__version__ = "0.1.0"

from edgeprune.base.errors import EdgepruneError  # noqa: E402
from edgeprune.shape.spec import ArchSpec, LayerSpec  # noqa: E402

__all__ = ["ArchSpec", "LayerSpec", "EdgepruneError", "__version__"]
