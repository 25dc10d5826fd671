"""Does the search's proxy rank its finalists as the equal recovery does? SmolLM2-135M-Instruct at 50%
of the parameters: every finalist of `search` is cut from the original, scored by the search's proxy
(today: KL to the original on the held-out half after 6 and 16 distillation steps; the figures in
search_proxy.md's first table were measured with the earlier proxy, LM loss on the held-out quarter), and recovered as benchmarks/pareto_real.py
recovers (8,192 KD tokens); bits/byte on the same held-out text. depth-50 is recovered beside them.

    python benchmarks/search_proxy.py     # prints one JSON line per finalist (figures in search_proxy.md)

Uses pareto_real's work folder (/tmp/edgeprune-pareto-real) for its corpus slice.
"""
import copy, json, sys, time
from pathlib import Path
import torch
sys.path.insert(0, "/work/main/benchmarks")
from smollm2_demo import bits_per_byte, corpus_slices
from edgeprune.files.checkpoint import load_checkpoint
from edgeprune.data.tokens import load_tokenizer
from edgeprune.pipeline.cli_compare import packaged_gguf
from edgeprune.prune import prune_model
from edgeprune.prune.calibration import calibrate, clear_grads
from edgeprune.prune.plan import plans_for
from edgeprune.prune.search_space import candidates, AXES
from edgeprune.prune.methods.search import layer_order, saliency_removed, cut, distilled_loss
from edgeprune.shape.units import taylor_saliency
from edgeprune.train.config import TrainConfig
from edgeprune.train.loop import train
from edgeprune.train.train_data import from_tokens

torch.set_num_threads(2)
class A: pass
args = A(); args.valid="/work/shared/refcorpus/valid.txt"; args.train_xz="/work/shared/refcorpus/train.txt.xz"
args.train_chars=600_000; args.eval_chars=12_000; args.calib_samples=16; args.calib_len=128
work = Path("/tmp/edgeprune-pareto-real")
gguf = packaged_gguf("smollm2-135m-instruct")
teacher = load_checkpoint(gguf); tok = load_tokenizer(teacher.path)
train_tokens, valid, n_bytes, calib = corpus_slices(args, work, tok)
def recover(m):
    cfg = TrainConfig(tokens=8192, seq_len=256, micro_batch=4, lr=3e-4, kd_alpha=1.0, kd_temp=1.0, eval_every=0,
                      ckpt_every=0, progress=False, warmup_frac=0.1)
    d = from_tokens(train_tokens, tokenizer_fingerprint=tok.fingerprint, vocab_size=tok.vocab_size)
    import shutil, tempfile; wd = Path(tempfile.mkdtemp(prefix="proxyexp-")); r = train(m, d, cfg, wd / "t", teacher=teacher.model); shutil.rmtree(wd, ignore_errors=True)
    return bits_per_byte(r.model.float().cpu().eval(), valid, n_bytes, 256)
model = load_checkpoint(gguf).model
spec0 = model.spec
target = int(round(spec0.n_params * 0.5))
cal = calibrate(model, calib, grads=True, activations=False, batch_size=4)
sal = {k: v.cpu() for k, v in taylor_saliency(dict(model.named_parameters()), spec0).items()}
plans = plans_for(model, "taylor", cal, 32); clear_grads(model)
order = layer_order(cal)
cands = candidates(spec0, 32, target_params=target, axes=AXES)
est = {c: saliency_removed(c, sal, plans, order, spec0.hidden_size) for c in cands}
best = {}
for c in sorted(cands, key=lambda c: (est[c], -c.params)): best.setdefault(c.n_layers, c)
final = sorted(best.values(), key=lambda c: est[c])
teach = copy.deepcopy(model).eval()
rows = []
for c in final:
    t = time.time()
    st, _ = cut(copy.deepcopy(model), c, plans, order, sal["hidden"])
    base = copy.deepcopy(st)
    r = {"shape": c.label(), "params": c.params}
    r["bpb_cut"] = bits_per_byte(st, valid, n_bytes, 256)
    for steps in (6, 16):
        s2 = copy.deepcopy(base)
        r[f"proxy{steps}"] = distilled_loss(s2, teach, calib, steps, 3e-4, 4)[0]
        if steps == 6: r["bpb_after6"] = bits_per_byte(s2, valid, n_bytes, 256)
    r["bpb_recovered"] = recover(copy.deepcopy(base))
    r["s"] = round(time.time() - t, 1)
    print(json.dumps(r), flush=True); rows.append(r)
res = prune_model(load_checkpoint(gguf).model, method="depth", calib=calib, align=32, seed=0, progress=False, ratio=0.5)
print(json.dumps({"shape": "depth-50", "bpb_recovered": recover(res.model)}), flush=True)
