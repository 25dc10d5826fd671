"""llama.cpp's extra CPU buffer types (AMX, weight repacking) and when we turn them off.

On x86 CPUs with AMX (Xeon servers, no edge target) llama.cpp repacks Q4_0 / Q8_0 weights into
an AMX buffer by default, and this build (llama-cpp-python 0.3.36) segfaults on files whose
layers have their own widths (`deci`) at Q8_0 (measured: tests/export/test_gguf_llamacpp.py).
With the extra buffers off the same file runs, and the results are the same arithmetic through
the plain CPU kernels. So every llama.cpp job that checks numbers (logits, greedy text,
perplexity, the chat and generate verbs) loads without them on AMX machines; ARM and other x86
CPUs keep llama.cpp's defaults (their repack kernels are what the devices run).

`Llama(...)` has no argument for it, so the model-parameter defaults it starts from are patched;
call this in the child process that loads the model, before `Llama(...)`. The app bundle's
serve.py carries its own copy of this patch (export/bundle_serve.py: the bundle runs without
edgeprune), and its serve.sh sets LLAMA_ARG_NO_REPACK for llama.cpp's own llama-server.
"""

from __future__ import annotations

from pathlib import Path


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        flags = next((ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        return False
    return "amx_int8" in flags.split()


def disable_extra_buffers() -> None:
    """Make every later `llama_cpp.Llama(...)` in this process load without extra buffer types."""
    import llama_cpp.llama_cpp as low

    if getattr(low.llama_model_default_params, "_edgeprune_plain", False):
        return
    original = low.llama_model_default_params

    def plain_params():  # type: ignore[no-untyped-def]
        params = original()
        params.use_extra_bufts = False
        return params

    plain_params._edgeprune_plain = True  # type: ignore[attr-defined]
    low.llama_model_default_params = plain_params


def safe_buffers() -> bool:
    """Turn extra buffers off where they crash (AMX); True when they were turned off."""
    if cpu_has_amx():
        disable_extra_buffers()
        return True
    return False


__all__ = ["cpu_has_amx", "disable_extra_buffers", "safe_buffers"]
