"""The equal-budget comparison runner: rows train through the trainer, final weights are scored, tables resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import TINY, write_viton

from experiments.compare import SUITES, Row, Suite, format_table, row_key, run_suite

TINY_FLAGS = tuple(item for key, value in TINY.items() for item in ("--model-option", f"{key}={value}"))


def tiny_suite(tmp_path: Path, rows: tuple[Row, ...], **options) -> tuple[Suite, Path]:
    """A suite of tiny rows on 12 fake VITON photos, and its data root."""
    root = tmp_path / "data"
    write_viton(root / "viton", n=12)
    suite = Suite(
        name="tiny",
        data=("viton:{root}/viton",),
        recipe=("--crop-size", "64", "-b", "2", "--epoch-size", "4", "--val-fraction", "0.3", "-j", "0"),
        rows=rows,
        figures=(("viton", "miou", "VITON mIoU"),),
        **options,
    )
    return suite, root


def test_rows_train_score_and_resume_with_failures_reported(tmp_path, capsys):
    rows = (
        Row("Lite", ("--variant", "ssfnet_lite", *TINY_FLAGS), seeds=(0, 1), paper=50.0),
        Row("Broken", ("--variant", "no_such_model")),
    )
    suite, root = tiny_suite(tmp_path, rows, latency=True)
    results = run_suite(suite, tmp_path / "out", minutes=0.15, data_root=str(root))
    for seed in (0, 1):
        entry = results[f"lite-s{seed}"]
        assert entry["iterations"] > 0 and entry["parameters_m"] > 0 and entry["cpu_ms_473"] > 0
        assert 0.0 <= entry["single"]["viton"]["miou"] <= 100.0
        assert "--seed " + str(seed) in entry["command"] and "--max-minutes 0.15" in entry["command"]
    assert "exited" in results["broken-s0"]["error"]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| Lite | 0 |" in table and "| Lite | 1 |" in table and "failed" in table
    assert "Seed spread" in table and "50.00" in table
    assert json.loads((tmp_path / "out" / "results.json").read_text()).keys() == results.keys()

    # A second call skips the finished rows and retries the failed one only.
    capsys.readouterr()
    run_suite(suite, tmp_path / "out", minutes=0.15, data_root=str(root), rows=["Lite"])
    assert "lite-s0: done earlier, skipped" in capsys.readouterr().out


def test_a_results_file_outside_the_run_folder_carries_finished_rows_to_a_fresh_folder(tmp_path, capsys):
    suite, root = tiny_suite(tmp_path, (Row("Lite", ("--variant", "ssfnet_lite", *TINY_FLAGS), seeds=(0, 1)),))
    record = tmp_path / "record" / "tiny.json"
    first = run_suite(suite, tmp_path / "out-1", minutes=0.1, data_root=str(root), seeds=[0], results_file=record)
    assert set(json.loads(record.read_text())) == {"lite-s0"} == set(first)
    assert not (tmp_path / "out-1" / "results.json").exists()

    # Another machine: the runs are gone, the record is not; only the missing seed trains.
    capsys.readouterr()
    both = run_suite(suite, tmp_path / "out-2", minutes=0.1, data_root=str(root), results_file=record)
    out = capsys.readouterr().out
    assert "lite-s0: done earlier, skipped" in out and "lite-s1: training" in out
    assert set(both) == {"lite-s0", "lite-s1"} and both["lite-s0"] == first["lite-s0"]
    assert not (tmp_path / "out-2" / "lite-s0").exists()
    assert "| Lite | 0 |" in (tmp_path / "out-2" / "table.md").read_text()

    record.write_text("{torn")
    with pytest.raises(SystemExit, match="cannot read the results"):
        run_suite(suite, tmp_path / "out-3", minutes=0.1, data_root=str(root), results_file=record)
    assert record.read_text() == "{torn"


def test_missing_data_is_skipped_with_a_message(tmp_path, capsys):
    assert run_suite(SUITES["race"], tmp_path / "out", minutes=1, data_root=str(tmp_path / "nowhere")) == {}
    assert "needs" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_suites_name_the_issue_rows_and_paper_figures(capsys):
    table2 = SUITES["table2"]
    assert [row.paper for row in table2.rows][:6] == [65.67, 65.80, 66.09, 67.19, 67.73, 69.62]
    assert {row_key(row, 1) for row in table2.rows if 1 in row.seeds} == {
        "baseline-s1",
        "baseline-smm-s1",
        "ssfnet-smm-ram-s1",
    }
    assert "--label-set" in table2.recipe and table2.multiscale
    race = [row.flags for row in SUITES["race"].rows]
    assert ("--backbone-weights", "none") == race[1][-2:] and "lraspp_mobilenet_v3_large" in race[2]
    assert race[3] == ("--variant", "ssfnet_lite0", "--loss-at", "full")
    run_suite(SUITES["race"], "unused", minutes=30, data_root="/", dry_run=True)  # data check fails first
    assert format_table(table2, {}).count("\n") == 2
    # The recipe suite: the race's data and recipe, the decoder's learning rate as the variable.
    recipe = SUITES["recipe"]
    assert recipe.data == SUITES["race"].data and recipe.recipe[: len(SUITES["race"].recipe)] == SUITES["race"].recipe
    assert [row.flags[-2:] for row in recipe.rows] == [(), ("--head-lr-mult", "10"), ("--head-lr-mult", "10")]
    assert ("--optimizer", "adamw") == recipe.rows[2].flags[:2]


def test_committed_validation_lists_are_the_trainers_split(dataset_dir):
    from pathlib import Path

    from ssfnet import get_label_set
    from ssfnet.data import open_source, parse_source, split_ids

    folder = Path(__file__).resolve().parents[1] / "train" / "splits"
    for kind in ("viton", "ccp", "pascal-person-part"):
        listed = (folder / f"{kind}-val.txt").read_text().split()
        assert listed == sorted(listed) and len(listed) > 100
        root = dataset_dir(kind)
        everything = open_source(parse_source(f"{kind}:{root}"), get_label_set("lip-20"))
        assert split_ids(everything.ids, 0.15, 0)[1] == listed
