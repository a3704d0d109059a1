"""The depth claims of gd-equivalence judge each depth on its own and read the alignment margin correctly."""

from mesalab.studies.gd_equivalence import depth_claims


def deep_results(tf, gdpp, cos_gdpp, cos_gd):
    ks = [2, 3]
    return {"depths": ks, "tf": tf, "gd": [1.0, 1.0], "gdpp": gdpp, "gdpp_eta": [[1.0, 2.0], [1.0, 2.0, 3.0]],
            "gdpp_gamma": [[0.1, 0.0], [0.1, 0.2, 0.0]], "cos_gdpp": cos_gdpp, "cos_gd": cos_gd}


def test_each_depth_gets_its_own_gdpp_verdict():
    rows = depth_claims(deep_results(tf=[[0.50, 0.52, 0.49], [0.30, 0.45, 0.46]], gdpp=[0.5, 0.3],
                                     cos_gdpp=[[0.99] * 3, [0.98] * 3], cos_gd=[[0.9] * 3, [0.9] * 3]), "src")
    verdicts = {r.claim.split(" LSA")[0]: r.verdict for r in rows}
    assert verdicts["2-layer"] == "PASS"            # median +0%
    assert verdicts["3-layer"] == "FAIL"            # median +50%, although one seed matches
    assert rows[0].verdict == "PASS"                # every depth beats K-step GD (loss 1.0)
    assert rows[-1].verdict == "PASS" and abs(rows[-1].measured - 0.08) < 1e-9


def test_better_than_gdpp_by_more_than_the_band_is_no_match():
    rows = depth_claims(deep_results(tf=[[0.40] * 3, [0.3] * 3], gdpp=[0.5, 0.3],
                                     cos_gdpp=[[0.9] * 3, [0.98] * 3], cos_gd=[[0.95] * 3, [0.9] * 3]), "src")
    assert rows[1].verdict == "FAIL" and rows[1].measured < 0   # −20%: not "matches"
    assert rows[-1].verdict == "FAIL"                           # K = 2 is closer to plain GD
