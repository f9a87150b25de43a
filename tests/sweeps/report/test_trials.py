"""The trial table read from a sweep directory: one typed row per trial, a damaged file a DAMAGED row."""

import json

from sweeps.record import Bound, TrialRecord, make_record
from sweeps.report import collect_trials


def _write(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))


def _replicates(d):
    reps = []
    for i, (seed, fq) in enumerate([(10, 0.8), (11, 0.6)]):
        final = {"forget_quality": fq}
        _write(d / "replicates" / str(i) / "results.json", {"config": {"seed": seed}, "final": final})
        reps.append({"index": i, "seed": seed, "dir": str(d / "replicates" / str(i)), "final": final, "best_epoch": None})
    return reps


def test_a_row_reads_ledger_results_and_record(tmp_path):
    d = tmp_path / "trials" / "a"
    _write(d / "trial.json", {"status": "FINISHED", "params": {"method.beta1": 2.0}, "last_metrics": {"x": 1.0}})
    record = make_record(_replicates(d), "mean", [Bound("forget_quality", "min", 0.9, "absolute")], ["forget_quality"])
    _write(d / "record.json", record.to_dict())
    (d / "replicates" / "0" / "model").mkdir()
    _write(tmp_path / "trials" / "b" / "trial.json", {"status": "RUNNING", "params": {}, "last_metrics": {"x": 0.5}})
    a, b = collect_trials(tmp_path)
    assert isinstance(a.record, TrialRecord) and a.record == TrialRecord.from_dict(record.to_dict())
    assert a.metrics == {"forget_quality": 0.7} == a.record.metrics and a.seeds == (10, 11)
    assert a.run_dir == d / "replicates" / "0" and a.has_model and a.config == {"seed": 10}
    assert a.feasible is False and a.intervals["forget_quality"][0] < 0.7 < a.intervals["forget_quality"][1]
    assert (b.status, b.metrics, b.record, b.feasible, b.intervals, b.run_dir) == ("RUNNING", {"x": 0.5}, None, None, {}, b.dir)


def test_a_damaged_or_misshapen_file_is_a_damaged_row_that_names_it(tmp_path):
    bad = {"a": ("results.json", "{trunc"), "b": ("record.json", {"metrics": {}}), "c": ("results.json", {"final": {}})}
    for tid, (name, doc) in bad.items():
        _write(tmp_path / "trials" / tid / "trial.json", {"status": "FINISHED", "params": {"p": 1}})
        _write(tmp_path / "trials" / tid / name, doc)
    rows = collect_trials(tmp_path)
    assert [(r.trial_id, r.status) for r in rows] == [("a", "DAMAGED"), ("b", "DAMAGED"), ("c", "DAMAGED")]
    for r in rows:
        assert f"{r.dir / bad[r.trial_id][0]}" in r.reason and "is damaged" in r.reason and r.params == {"p": 1}
        assert r.record is None and r.config is None
