"""The search's time budget: the counts it chooses fit the seconds it measured, the user's own
counts are never changed, and a real search reports and obeys what it chose."""

import pytest
import torch

from edgeprune.base.errors import PruneError
from edgeprune.prune import prune_model
from edgeprune.prune.search_budget import SEARCH_BUDGET_MINUTES, DEFAULTS, RUNGS, Costs, Counts, fit_counts, seconds_needed
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec

COSTS = Costs(screen_s=10.0, step_s=2.0)
NONE_SET = {"screen": None, "finalists": None, "refine": None, "steps": None}


def test_no_limit_gives_the_defaults_and_a_generous_one_too():
    assert fit_counts(NONE_SET, 10, COSTS, None)[0] == DEFAULTS
    full = seconds_needed(DEFAULTS, 10, COSTS)
    assert fit_counts(NONE_SET, 10, COSTS, full)[0] == DEFAULTS
    assert fit_counts(NONE_SET, 10, COSTS, full - 1)[0] != DEFAULTS


def test_the_estimate_counts_every_screen_and_every_distillation():
    # 10 depths x 4 shapes screened; 7 finalists re-cut and 8 steps each; refine: 2 depths x (4 + 1 + 8 steps)
    assert seconds_needed(DEFAULTS, 10, COSTS) == 10 * 4 * 10 + 7 * (10 + 8 * 2) + 2 * (4 * 10 + 10 + 8 * 2)
    assert seconds_needed(Counts(1, 7, 0, 0), 10, COSTS) == 10 * 10  # no distillation: screening only
    # a machine twice as slow needs twice the time for the same counts
    assert seconds_needed(DEFAULTS, 10, Costs(20.0, 4.0)) == 2 * seconds_needed(DEFAULTS, 10, COSTS)


@pytest.mark.parametrize("left", [100.0, 150.0, 300.0, 500.0, 700.0, 1000.0])
def test_the_chosen_counts_fit_and_are_the_richest_that_do(left):
    counts, est = fit_counts(NONE_SET, 10, COSTS, left)
    assert est == seconds_needed(counts, 10, COSTS) <= left
    richer = RUNGS[: RUNGS.index(counts)]
    assert all(seconds_needed(r, 10, COSTS) > left for r in richer)


def test_more_time_never_buys_a_cheaper_search():
    ests = [fit_counts(NONE_SET, 10, COSTS, left)[1] for left in range(50, 2000, 25)]
    assert ests == sorted(ests)


def test_nothing_fits_gives_the_least_search_and_says_its_estimate():
    counts, est = fit_counts(NONE_SET, 10, COSTS, 5.0)
    assert counts == RUNGS[-1] and counts.steps == 0 and counts.screen == 1
    assert est == 100.0 > 5.0


def test_counts_the_user_set_are_held_on_every_rung():
    asked = {**NONE_SET, "steps": 16, "screen": 3}
    for left in (1.0, 200.0, 900.0, None):
        counts, _ = fit_counts(asked, 10, COSTS, left)
        assert counts.steps == 16 and counts.screen == 3


SPEC = ArchSpec.uniform(family="llama", vocab_size=256, hidden_size=64, n_layers=6, n_heads=4, n_kv_heads=2,
                        ffn_dim=96, head_dim=16, max_position_embeddings=128)
CALIB = torch.randint(0, 256, (8, 16), generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))


def _search(**kw):
    return prune_model(build_model(SPEC, seed=0), method="search", ratio=0.3, calib=CALIB, align=8,
                       progress=False, **kw)


def test_a_search_over_its_budget_runs_the_least_search_and_reports_it():
    res = _search(budget=1e-9)  # a budget no machine meets
    rec = res.log["budget"]
    assert rec["counts"] == RUNGS[-1].as_dict() and rec["estimated_s"] > rec["minutes"] * 60
    assert rec["measured"]["screen_s"] > 0 and rec["set_by_user"] == []
    assert res.log["distill_steps"] == 0
    assert all(r["distill_losses"] == [] and r["kl_after_distill"] == r["kl_after_cut"] for r in res.log["finalists"])
    # one shape per depth was screened, and every depth's one went on
    depths = {r["n_layers"] for r in res.log["finalists"]}
    assert len(res.log["screened"]) == len(depths)


def test_no_limit_runs_the_full_counts_and_the_users_counts_survive_any_budget():
    full = _search(budget=0, refine=0)
    assert full.log["budget"]["counts"] == {**DEFAULTS.as_dict(), "refine": 0}
    assert full.log["distill_steps"] == DEFAULTS.steps
    held = _search(budget=1e-9, steps=2, finalists=2)
    assert held.log["budget"]["counts"]["steps"] == 2 and len(held.log["finalists"]) == 2
    assert held.log["distill_steps"] == 2 and sorted(held.log["budget"]["set_by_user"]) == ["finalists", "steps"]


def test_a_resumed_search_keeps_the_counts_its_budget_chose(tmp_path, monkeypatch):
    """The rerun reads its first shape back from the journal in no time; it must not take that as a
    fast machine and search more than the run it resumes."""
    journal = str(tmp_path / "journal.json")
    first = _search(budget=1e-9, journal=journal)
    again = _search(budget=1e-9, journal=journal)
    assert again.log["budget"].get("resumed") is True
    assert again.log["budget"]["counts"] == first.log["budget"]["counts"]
    assert again.spec == first.spec


def test_a_budget_that_is_not_minutes_is_refused():
    for bad in (-1, float("nan"), float("inf"), "soon"):
        with pytest.raises(PruneError, match="budget"):
            _search(budget=bad)



def test_the_help_states_the_budget_the_search_runs_with():
    from edgeprune.pipeline.method_help import METHOD_HELP
    from edgeprune.prune.methods.registry import get_method

    assert f"{SEARCH_BUDGET_MINUTES:g} minutes" in METHOD_HELP["search"] and "budget" in METHOD_HELP["search"]
    assert f"default {SEARCH_BUDGET_MINUTES:g}" in get_method("search").options["budget"]


def test_ships_plan_states_the_searchs_budget():
    from edgeprune.pipeline.recipe import Recipe
    from edgeprune.pipeline.ship import plan_line

    line = plan_line(Recipe(method="search", speedup=1.5, ratio=None), [])
    assert f"2) prune (search: fitted to {SEARCH_BUDGET_MINUTES:g} minutes on this machine" in line
    assert "2) prune (uniform)" in plan_line(Recipe(method="uniform", ratio=0.5), [])
