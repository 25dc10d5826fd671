"""Which split of the calibration windows, and which score, ranks search's finalists as the equal
recovery does? SmolLM2-135M-Instruct at 50%: the four finalists that benchmarks/search_proxy.md
recovered, each distilled 6 steps on the first part of a 16- or 48-window calibration batch and
scored on the rest by LM loss and by KL to the original.

    python benchmarks/search_proxy_split.py   # one JSON line per finalist (figures in search_proxy.md)
"""
import copy, json, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from smollm2_demo import corpus_slices
from edgeprune.files.checkpoint import load_checkpoint
from edgeprune.data.tokens import load_tokenizer
from edgeprune.pipeline.cli_compare import packaged_gguf
from edgeprune.prune.calibration import calibrate, clear_grads
from edgeprune.prune.plan import plans_for
from edgeprune.prune.search_space import candidates, AXES
from edgeprune.prune.methods.search import layer_order, saliency_removed, cut
from edgeprune.shape.units import taylor_saliency
torch.set_num_threads(2)
class A: pass
args = A(); args.valid="/work/shared/refcorpus/valid.txt"; args.train_xz="/work/shared/refcorpus/train.txt.xz"
args.train_chars=600_000; args.eval_chars=12_000; args.calib_len=128
work = Path("/tmp/edgeprune-pareto-real"); work.mkdir(exist_ok=True)
gguf = packaged_gguf("smollm2-135m-instruct")
model = load_checkpoint(gguf).model; tok = load_tokenizer(load_checkpoint(gguf).path)
calibs = {}
for n in (16, 48):
    args.calib_samples = n
    _, valid, n_bytes, calibs[n] = corpus_slices(args, work, tok)
calib = calibs[16]
spec0 = model.spec
cal = calibrate(model, calib, grads=True, activations=False, batch_size=4)
sal = {k: v.cpu() for k, v in taylor_saliency(dict(model.named_parameters()), spec0).items()}
plans = plans_for(model, "taylor", cal, 32); clear_grads(model)
order = layer_order(cal)
cands = candidates(spec0, 32, target_params=int(round(spec0.n_params * 0.5)), axes=AXES)
est = {c: saliency_removed(c, sal, plans, order, spec0.hidden_size) for c in cands}
best = {}
for c in sorted(cands, key=lambda c: (est[c], -c.params)): best.setdefault(c.n_layers, c)
final = sorted(best.values(), key=lambda c: est[c])
teach = copy.deepcopy(model).eval()
def distill(st, train, steps=6, bs=4):
    opt = torch.optim.AdamW(st.parameters(), lr=3e-4, weight_decay=0.0); st.train()
    for s in range(steps):
        lo = (s * bs) % train.shape[0]; ids = train[lo:lo + bs]
        with torch.no_grad(): t = teach(ids).logits.float()
        out = st(ids).logits.float()
        kl = torch.nn.functional.kl_div(out.log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="none").sum(-1).mean()
        opt.zero_grad(set_to_none=True); kl.backward(); opt.step()
    st.eval(); return st
@torch.no_grad()
def scores(st, held):
    lm, kl = [], []
    for i in range(0, held.shape[0], 4):
        ids = held[i:i+4]; o = st(ids, labels=ids); lm.append(float(o.loss))
        t = teach(ids).logits.float()
        kl.append(float(torch.nn.functional.kl_div(o.logits.float().log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="none").sum(-1).mean()))
    return sum(lm)/len(lm), sum(kl)/len(kl)
splits = {"c16_t12_h4": (calibs[16][:12], calibs[16][12:]), "c16_t8_h8": (calibs[16][:8], calibs[16][8:]),
          "c48_t12_h36": (calibs[48][:12], calibs[48][12:]), "c48_t24_h24": (calibs[48][:24], calibs[48][24:])}
keep = {"L21 d576 6h/3kv ffn704", "L15 d576 9h/3kv ffn992", "L12 d576 9h/3kv ffn1376", "L18 d576 6h/3kv ffn864"}
for c in [c for c in final if c.label() in keep]:
    t0 = time.time()
    base, _ = cut(copy.deepcopy(model), c, plans, order, sal["hidden"])
    r = {"shape": c.label()}
    for name, (tr, he) in splits.items():
        st = distill(copy.deepcopy(base), tr)
        lm, kl = scores(st, he)
        r[name] = {"lm": round(lm, 4), "kl": round(kl, 4)}
    r["s"] = round(time.time() - t0, 1)
    print(json.dumps(r), flush=True)
