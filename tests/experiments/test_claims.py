"""The claims' statistics and verdict rules (experiments/claims.py) on hand-written
summaries."""
from experiments import claims
from experiments.claims import FAILS, HOLDS, INCONCLUSIVE
from tests.experiments.summaries import ACCURACY, group_of, make_runs


def test_mean_std_format():
    assert claims.fmt_pm([0.80, 0.82, 0.84]) == "82.00 ± 2.00"
    assert claims.fmt_pm([0.5]) == "50.00 (n=1)"
    assert claims.fmt_pm([0.1, 0.1], 1.0, 4) == "0.1000 ± 0.0000"


def test_verdict_rules():
    a, b = [0.90, 0.91, 0.92], [0.80, 0.81, 0.82]
    assert claims.beats(a, b).verdict == HOLDS
    assert claims.beats(b, a).verdict == FAILS
    assert claims.beats(a, [0.89, 0.91, 0.93]).verdict == INCONCLUSIVE
    assert claims.beats([0.0, 0.0], [0.0, 0.0]).verdict == FAILS         # no noise, no gain
    assert claims.beats([0.9], [0.1, 0.2]).verdict == INCONCLUSIVE       # one seed
    c = claims.beats(a, b)
    assert c.fmt() == "+10.00 ± 1.63"
    assert claims.matches([0.900, 0.901, 0.902], [0.903, 0.904, 0.905], 0.01).verdict == HOLDS
    assert claims.matches(a, b, 0.01).verdict == FAILS
    assert claims.matches(a, [0.89, 0.90, 0.91], 0.01).verdict == INCONCLUSIVE
    assert claims.overall([HOLDS, HOLDS, INCONCLUSIVE]) == HOLDS
    assert claims.overall([HOLDS, INCONCLUSIVE, INCONCLUSIVE]) == INCONCLUSIVE
    assert claims.overall([HOLDS, HOLDS, FAILS]) == INCONCLUSIVE          # mixed
    assert claims.overall([FAILS, INCONCLUSIVE]) == FAILS
    assert claims.overall([]) == INCONCLUSIVE


def test_every_claim_holds_on_the_designed_numbers():
    results = claims.all_claims(group_of(make_runs()), tolerance=0.01)
    assert [(c.claim, c.verdict) for c in results] == [
        (1, HOLDS), (2, HOLDS), ("3a", HOLDS), ("3b", HOLDS), (4, HOLDS)]
    assert results[2].evidence == "6 of 6 cells hold, 0 do not, 0 inconclusive"
    assert results[1].table[-1][:3] == ["gain at 0.01 - gain at 0.2", "", "+3.50 ± 0.46"]
    assert results[4].evidence == ("10.5 % of neurons ablated at density 0.01 vs 0.0 % "
                                  "at 0.2")


def test_claims_that_do_not_hold_or_are_inconclusive():
    worse = {**ACCURACY, ("srigl", 0.01): 0.70, ("static", 0.2): 0.895, ("set", 0.2): 0.90,
             ("set", 0.01): 0.85}
    made = make_runs(worse, ablated={0.2: (0, 0, 0), 0.01: (0, 0, 0)})
    results = {c.claim: c for c in claims.all_claims(group_of(made), tolerance=0.01)}
    assert results[1].verdict == INCONCLUSIVE                             # holds, then fails
    assert [row[3] for row in results[1].table] == [HOLDS, FAILS]
    assert results[2].verdict == FAILS                                    # gain -6 pp at 0.01
    assert results["3a"].verdict == INCONCLUSIVE                          # mixed
    assert results["3a"].evidence == "3 of 6 cells hold, 2 do not, 1 inconclusive"
    assert results["3b"].verdict == FAILS                                 # 4 of 4 do not
    assert results[4].verdict == FAILS                                    # nothing ablated
    made = make_runs(densities=(0.2, 0.05, 0.01),
                     accuracy={**ACCURACY, **{(lab, 0.05): 0.85 for lab in
                                              ("static", "set", "rigl", "srigl-noabl",
                                               "srigl")}},
                     ablated={0.2: (0, 0, 0), 0.05: (60, 20, 0), 0.01: (30, 10, 0)})
    claim4 = claims.claim_4(group_of(made).cells)
    assert claim4.verdict == INCONCLUSIVE and "falls somewhere" in claim4.evidence


def test_large_spread_rule():
    assert claims.large_spread([0.10, 0.84, 0.89])                     # std 44 pp
    assert claims.large_spread([0.80, 0.80, 0.90])                     # std 5.8 pp
    assert not claims.large_spread([0.80, 0.82, 0.84])                 # std 2 pp
    assert not claims.large_spread([0.10])                             # one seed


def test_claims_name_the_failed_runs_they_excluded():
    made = make_runs()
    at_chance = next(r for r in made if r.label == "srigl" and r.config.density == 0.01
                     and r.config.seed == 2)
    made.remove(at_chance)
    made.append(type(at_chance)(at_chance.path, at_chance.config,
                                dict(at_chance.summary, test_accuracy=0.1)))
    results = {c.claim: c for c in claims.all_claims(group_of(made), tolerance=0.01)}
    note = "; excluded 1 failed run: mlp srigl d0.01 s2 (at_chance, 10.00 %)"
    for claim in (1, 2, "3a", "3b", 4):                                # all compare SRigL
        assert results[claim].evidence.endswith(note), claim
    assert results[1].verdict == HOLDS                                 # 2 seeds left
    made = make_runs({**ACCURACY, ("set", 0.2): 0.1})                  # every SET seed
    results = {c.claim: c for c in claims.all_claims(group_of(made), tolerance=0.01)}
    assert results["3b"].evidence.startswith("2 of 2 cells hold")      # d0.01 only
    assert "excluded 3 failed runs: mlp set d0.2 s0 (at_chance, 9.80 %), mlp set d0.2 s1 " \
        "(at_chance, 10.00 %), mlp set d0.2 s2 (at_chance, 10.20 %)" in results["3b"].evidence
    assert "excluded" not in results[1].evidence
