"""bench.muse_small refuses bad points before any run, naming the bad value and the valid form."""

from __future__ import annotations

import pytest

from bench.muse_small import GRID, main


@pytest.mark.parametrize("argv, message", [
    (["points"], "give --point beta1,beta2,alpha,lr"),
    (["points", "--point", "5,0.1"], "'5,0.1': expected beta1,beta2,alpha,lr"),
    (["points", "--point", "5,0.1,1,fast"], "'5,0.1,1,fast': expected beta1,beta2,alpha,lr"),
])
def test_bad_points_are_refused_before_any_run(argv, message):
    with pytest.raises(SystemExit, match=message):
        main(argv)


def test_the_grid_spans_the_authors_point_down_to_no_saturation():
    beta1s = {p[0] for p in GRID}
    assert min(beta1s) == 0.0 and max(beta1s) >= 3.0 and len(GRID) == len(set(GRID))
