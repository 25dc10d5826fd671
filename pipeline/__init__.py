"""The pipeline room, above the stages: verbs and flows that combine several stages.

`ship` (prune -> recover -> export -> bench -> report), its report, the stage fingerprints that
let it resume, recipes, the embedded default job, `compare`, the `prune` verb (which wires
train/'s stage training between prune/'s stages), and the verbs that run a finished artifact in
any engine (`info`, `generate`, `chat`). The stage folders below never import this package
(tests/core/test_import_graph.py checks it).
"""
