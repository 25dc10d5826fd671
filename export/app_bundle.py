"""The app bundle: what an app developer copies into LM Studio, Ollama or a llama.cpp server.

    app/
      <name>-<quant>.gguf   one per quant, named as LM Studio and Ollama users expect
      Modelfile             Ollama: FROM the default file, stop tokens from the GGUF's tokenizer,
                            num_ctx and sampling; the chat template stays the GGUF's own
      serve.sh              an OpenAI-compatible server: llama-server, else llama-cpp-python's
      serve.py              llama-cpp-python's server with llama.cpp's AMX repack off where it crashes
                            (export/bundle_serve.py)
      README.md             sizes, measured speed per device, memory at 512 / 2k / 8k, how to load
      bundle.json           the same facts for programs

The folder is written whole into a temporary sibling and renamed into place (atomic_dir): a
failed or interrupted run leaves the previous bundle, never half of one. GGUFs are hard links to
the exported files where the filesystem allows (no second copy of the weights), else copies.
Every value these texts hold comes through export/bundle_values.py (checked by type, one line).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from edgeprune.base.errors import ExportError
from edgeprune.export import bundle_values as values
from edgeprune.export.bundle_serve import (LLAMA_SERVER_PORT, PY_SERVER_PORT, SERVE_PY, SERVE_PY_TEXT,
                                           SERVER_INSTALL, serve_script, server_argv)
from edgeprune.export.bundle_values import BundleValues, bundle_name, escape_text, quoted

BUNDLE_JSON = "bundle.json"
# the quant the Modelfile and serve.sh use when several are bundled: the usual app default first
DEFAULT_QUANT_ORDER = ("Q4_K_M", "Q4_0", "Q5_K_M", "Q6_K", "Q8_0", "Q4_1", "Q5_0", "Q3_K_M", "F16", "BF16", "F32")
DEFAULT_N_CTX = 2048  # the context num_ctx / -c ask for, capped by the model's trained context
# llama.cpp's and Ollama's own default; used when the source's generation_config.json sets none
DEFAULT_TEMPERATURE = 0.8
def _gguf_facts(path: Path) -> dict[str, Any]:
    """Name, spec, trained context, stop tokens and chat template presence from a GGUF's metadata."""
    from gguf.constants import Keys

    from edgeprune.files.gguf_reader import read_metadata
    from edgeprune.files.spec_of import spec_of

    md = read_metadata(path)
    tokens = md.get(Keys.Tokenizer.LIST) or []
    stops = []
    for key in (Keys.Tokenizer.EOS_ID, Keys.Tokenizer.EOT_ID, Keys.Tokenizer.EOM_ID):
        i = md.get(key)
        if i is not None and 0 <= int(i) < len(tokens) and str(tokens[int(i)]) not in stops:
            stops.append(str(tokens[int(i)]))
    spec = spec_of(path)
    return {"display_name": str(md.get(Keys.General.NAME) or path.stem), "arch": md.get(Keys.General.ARCHITECTURE),
            "spec": spec, "n_ctx_train": spec.max_position_embeddings, "stop": stops,
            "chat_template": bool(md.get(Keys.Tokenizer.CHAT_TEMPLATE))}


def read_generation_config(model_dir: Path) -> Optional[Mapping[str, Any]]:
    """The source's generation_config.json, or None when it has none or it cannot be read (said:
    the bundle then takes the default sampling, and an export is never refused over it)."""
    import logging

    from edgeprune.base.errors import CheckpointError
    from edgeprune.files.checkpoint import read_json

    path = Path(model_dir) / "generation_config.json"
    if not path.is_file():
        return None
    try:
        gc = read_json(path)
    except CheckpointError as e:
        logging.getLogger(__name__).warning("%s; the app bundle uses the default sampling", e)
        return None
    return gc if isinstance(gc, Mapping) else None


def modelfile_text(v: BundleValues) -> str:
    """An Ollama Modelfile; no TEMPLATE: Ollama takes the chat template from the GGUF itself. Every
    value was checked by bundle_values: one line each, numbers as numbers, stop strings quoted."""
    tag = v.name.lower()
    lines = [f"# Ollama Modelfile for {v.display_name} (written by edgeprune)",
             f"#   ollama create {tag} -f Modelfile && ollama run {tag}",
             "# The chat template is the GGUF's own (tokenizer.chat_template): not repeated here.",
             f"FROM ./{v.default_file}", f"PARAMETER num_ctx {v.n_ctx}"]
    lines += [f"PARAMETER {k} {x}" for k, x in v.sampling.items()]
    lines += [f"PARAMETER stop {quoted(s)}" for s in v.stops]
    return "\n".join(lines) + "\n"


def _speed_rows(records: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]],
                rename: Mapping[str, str]) -> list[list[Any]]:
    from edgeprune.base.table import human_bytes

    rows = []
    for r in records:
        if r.get("model") in rename:
            pm = lambda m, s: "-" if m is None else f"{m:.1f} ± {s or 0:.1f}"  # noqa: E731
            rss = r.get("peak_rss_mb")
            rows.append([r["device"], rename[r["model"]], "measured", pm(r.get("pp_tps_mean"), r.get("pp_tps_std")),
                         pm(r.get("tg_tps_mean"), r.get("tg_tps_std")),
                         human_bytes(rss * 2 ** 20) if rss else "-"])
    for p in predictions:
        if p.get("model") in rename:
            tg = p.get("model_tg_tps") or p.get("tg_pred_tps")
            rows.append([p["device"], rename[p["model"]], "**predicted** (device not reached)", "-",
                         f"{tg:.1f}" if tg else "-", "-"])
    return rows


def _overheads(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Largest measured runtime overhead per source file name (bench records' memory field)."""
    out: dict[str, int] = {}
    for r in records:
        oh = (r.get("memory") or {}).get("overhead_bytes")
        if oh is not None:
            out[r["model"]] = max(int(oh), out.get(r["model"], 0))
    return out


def write_app_bundle(out_dir: Path, ggufs: Sequence[tuple[str, Path]], *, name: Optional[str] = None,
                     n_ctx: Optional[int] = None, generation_config: Optional[Mapping[str, Any]] = None,
                     records: Sequence[Mapping[str, Any]] = (), predictions: Sequence[Mapping[str, Any]] = (),
                     devices: Sequence[Any] = (), default_quant: Optional[str] = None,
                     quality: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Write the app bundle for `ggufs` ((quant, path) pairs, one model) into `out_dir`; return
    what bundle.json holds. `records` / `predictions`: bench results as dicts (speed and the
    measured runtime overhead); `devices`: profiles or names whose RAM the memory check uses;
    `quality`: the export manifest's record of prune's verdict at the cut (export.api.quality_at_cut)."""
    from edgeprune.base.atomic_io import atomic_dir
    from edgeprune.devices import load_device
    from edgeprune.devices.memory import FileMemory, fit_markdown, memory_grid, memory_markdown, ram_bytes

    if not ggufs:
        raise ExportError("an app bundle needs at least one GGUF file (export with --formats gguf)")
    ggufs = [(q, Path(p)) for q, p in ggufs]
    facts = _gguf_facts(ggufs[0][1])
    stem = values.file_stem(name) if name else bundle_name(facts["display_name"])
    files = [(q, src, values.file_stem(f"{stem}-{q}.gguf", values.FILE_MAX)) for q, src in ggufs]
    rename = {src.name: dst for _, src, dst in files}
    order = [default_quant] if default_quant else []
    default = next((f for q in [*order, *DEFAULT_QUANT_ORDER] for f in files if f[0] == q), files[0])
    ctx = n_ctx or min(DEFAULT_N_CTX, facts["n_ctx_train"])
    v = values.bundle_values(name=stem, display=facts["display_name"], arch=facts["arch"], default_file=default[2],
                      ctx=ctx, ctx_train=facts["n_ctx_train"], stop=facts["stop"],
                      sampled=values.sampling(generation_config, DEFAULT_TEMPERATURE))
    profiles = [load_device(d) if isinstance(d, str) else d for d in devices]
    overhead = _overheads(records)
    mem = [FileMemory(dst, facts["spec"], src.stat().st_size, overhead.get(src.name)) for _, src, dst in files]
    fit_table, warnings = fit_markdown(mem, [(p.name, ram_bytes(p.ram_gb)) for p in profiles]) if profiles else ("", [])
    info = {
        "name": v.name, "display_name": v.display_name, "arch": v.arch,
        "uniform": facts["spec"].is_uniform, "n_ctx": v.n_ctx, "n_ctx_train": v.n_ctx_train,
        "stop": list(v.stops), "sampling": dict(v.sampling), "chat_template": facts["chat_template"],
        "default": v.default_file,
        "files": [{"file": dst, "quant": q, "bytes": src.stat().st_size} for q, src, dst in files],
        # what serve.sh runs: llama-cpp-python's server through serve.py (AMX-safe)
        "commands": {"llama-server": server_argv("llama-server", v.default_file, v.n_ctx),
                     "llama-cpp-python": server_argv(SERVE_PY, v.default_file, v.n_ctx)},
        "memory": {m.name: [e.to_dict() for e in memory_grid(m.spec, m.weights_bytes, overhead_bytes=m.overhead_bytes)]
                   for m in mem},
        "memory_warnings": warnings,
        **({"quality": dict(quality)} if quality else {}),
    }
    readme = _readme(info, files, _speed_rows(records, predictions, rename), memory_markdown(mem), fit_table, warnings)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for _, src, dst in files:
            _link_or_copy(src, tmp / dst)
        (tmp / "Modelfile").write_text(modelfile_text(v))
        (tmp / "serve.sh").write_text(serve_script(v.default_file, v.n_ctx))
        (tmp / "serve.sh").chmod(0o755)
        (tmp / SERVE_PY).write_text(SERVE_PY_TEXT)
        (tmp / "README.md").write_text(readme)
        (tmp / BUNDLE_JSON).write_text(json.dumps(info, indent=2))
    from edgeprune.base.outdir import add_to_marker

    add_to_marker(out_dir.parent, out_dir.name)  # an export folder's marker lists what it holds
    return info


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(src, dst)


def _code(text: str) -> str:
    """A Markdown code span holding `text` whatever backticks it has (CommonMark: a fence longer
    than any run inside, padded with spaces)."""
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}" if "`" in text else f"`{text}`"


def _quality_section(quality: Optional[Mapping[str, Any]]) -> list[str]:
    """The verdict prune measured at the cut, so an app developer sees it before shipping the file."""
    if not quality:
        return []
    from edgeprune.export.api import quality_line

    line = escape_text(quality_line(dict(quality)))  # words read from a model's edgeprune.json are text
    return ["## Quality", "", line[0].upper() + line[1:] + ".",
            *([] if quality.get("trained_since") else
              ["", "Not trained since the cut: `edgeprune prune` printed the recovery command and its time."]), ""]


def _readme(info: dict[str, Any], files: list, speed: list, memory_md: str, fit_md: str, warnings: list) -> str:
    from edgeprune.devices.memory import USABLE_RAM_SHARE
    from edgeprune.base.table import human_bytes, markdown_table

    d, ctx = info["default"], info["n_ctx"]
    arch = ("`deci` (llama.cpp's architecture for per-layer widths: this model's layers differ)"
            if info["arch"] == "deci" else f"`{info['arch']}`")
    import html

    md = [f"# {html.escape(info['display_name'], quote=False)}", "",  # a name's `<tag>` is text, not markup
          f"GGUF files for apps, written by edgeprune. Architecture {arch}; trained context "
          f"{info['n_ctx_train']} tokens; chat template {'in the file' if info['chat_template'] else 'none (a base model)'}; "
          f"stop tokens {', '.join(_code(escape_text(s)) for s in info['stop']) or 'none'}.", "",
          "## Files", "",
          markdown_table(["file", "quant", "size"],
                         [[f"`{dst}`" + (" (default)" if dst == d else ""), q, human_bytes(src.stat().st_size)]
                          for q, src, dst in files]), "",
          "## Load it", "",
          f"- **Ollama**: `ollama create {info['name'].lower()} -f Modelfile && ollama run {info['name'].lower()}` "
          f"(the Modelfile uses `{d}`; change its FROM line for another file).",
          f"- **LM Studio**: `lms import {d}`, or copy the file to `~/.lmstudio/models/edgeprune/{info['name']}/`.",
          f"- **An OpenAI-compatible server**: `./serve.sh` (or `./serve.sh --port N`, or `PORT=N ./serve.sh`; "
          f"`./serve.sh FILE` for another file) starts llama.cpp's `llama-server` when it is on PATH "
          f"(http://127.0.0.1:{LLAMA_SERVER_PORT}/v1), else llama-cpp-python's server through `serve.py` "
          f"(http://127.0.0.1:{PY_SERVER_PORT}/v1; `{SERVER_INSTALL}` when it says neither is installed). "
          f"The commands it runs: `{shlex.join(info['commands']['llama-server'])}` and "
          f"`{shlex.join(info['commands']['llama-cpp-python'])}`.",
          "- On an x86 CPU with AMX, llama.cpp repacks Q4_0 / Q8_0 weights into an AMX buffer and "
          "llama-cpp-python 0.3.x crashes in decode there: serve.sh turns that repack off (`LLAMA_ARG_NO_REPACK=1` "
          "for llama-server, `serve.py` for llama-cpp-python); a plain `python -m llama_cpp.server` does not. "
          "The Modelfile is for Ollama, which runs its own build of llama.cpp.", "",
          "Any OpenAI client then talks to it:", "", "```python",
          "from openai import OpenAI",
          f"client = OpenAI(base_url=\"http://127.0.0.1:{PY_SERVER_PORT}/v1\", api_key=\"none\")",
          "reply = client.chat.completions.create(model=\"local\", messages=[{\"role\": \"user\", \"content\": \"Hi\"}])",
          "print(reply.choices[0].message.content)", "```", "",
          "llama-cpp-python's server applies `repeat_penalty` 1.1 unless told otherwise: send "
          "`extra_body={\"repeat_penalty\": 1.0}` with `temperature=0` for the same greedy text as "
          "`edgeprune generate`.", "",
          *_quality_section(info.get("quality")),
          "## Speed", ""]
    if speed:
        md += [markdown_table(["device", "file", "", "prefill t/s", "decode t/s", "peak RSS"], speed), "",
               "Measured rows: llama-bench's convention (prefill of the bench prompt, then decode), mean ± std over "
               "the repetitions; peak RSS is the whole measuring process's.", ""]
    else:
        md += ["No bench run recorded for these files (`edgeprune bench FILE --device NAME` measures one).", ""]
    md += ["## Memory", "",
           "What a device must hold: the file (llama.cpp maps it whole), the KV cache at the context "
           "(summed over this model's real per-layer KV heads, as llama.cpp allocates it; f16 without "
           "flash attention is llama.cpp's default, q8_0 needs flash attention: `-fa on -ctk q8_0 -ctv q8_0`), "
           "and the runtime overhead a bench run measured (peak RSS minus weights and KV cache, at the "
           "bench's own context; compute buffers grow somewhat with longer contexts).", "",
           memory_md, ""]
    if fit_md:
        md += [f"Fit on each target device (a model may plan for {USABLE_RAM_SHARE:.0%} of the RAM; the rest is "
               "the system's), f16 KV cache:", "", fit_md, ""]
        md += [f"- ⚠ {w}" for w in warnings] + ([""] if warnings else [])
    return "\n".join(md)
