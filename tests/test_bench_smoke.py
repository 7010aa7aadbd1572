"""The benchmark harness's pure parts: window counting, the report writer, event choice.

The scenarios themselves run with `make bench` (minutes, on the shared machine); these tests only
keep the harness's arithmetic and its BENCHMARKS.md round trip honest.
"""

from __future__ import annotations

from bench import report
from bench.cold_start import parse_importtime, pick_event
from bench.common import Row, ScenarioResult, max_in_window, per_aligned_second

MACHINE = {"nproc": "2", "memory": "1.0 GiB", "python": "CPython 3.11", "date": "today"}


def test_max_in_window_is_sliding_not_aligned():
    # 4 sends in [0.6, 1.6): no aligned second holds more than 2, a sliding window holds 4.
    stamps = [0.6, 0.9, 1.4, 1.5, 2.7]
    assert per_aligned_second(stamps) == {0: 2, 1: 2, 2: 1}
    assert max_in_window(stamps) == 4
    # A window is [t, t + 1): a send exactly one second later starts a new one.
    assert max_in_window([0.0, 1.0, 2.0]) == 1
    assert max_in_window([]) == 0


def _result(name: str, project: str, met: bool) -> ScenarioResult:
    return ScenarioResult(name, f"{name} title", rows=[Row(
        scenario=f"{name} row", project=project, baseline="10 s", ratio="2.00×",
        goal="≥ 5×", met=met, command=f"make bench ONLY={name}")], notes=["- a note"],
        data={"x": 1})


def test_report_keeps_other_scenarios_when_one_is_rerun(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    report.write(out, [_result("wizard", "1 s", True), _result("kms", "1", True)], MACHINE)
    report.write(out, [_result("wizard", "3 s | slow", False)], MACHINE)

    text = out.read_text()
    assert "| wizard row | 3 s \\| slow | 10 s | 2.00× | ≥ 5× | **no** | " in text
    assert "| kms row | 1 | 10 s | 2.00× | ≥ 5× | yes | `make bench ONLY=kms` |" in text
    assert "| nproc | 2 |" in text
    data = report.load_previous(out)
    assert set(data["scenarios"]) == {"wizard", "kms"}
    assert data["scenarios"]["wizard"]["rows"][0]["project"] == "3 s | slow"
    # Scenarios appear in the order, whatever order they ran in.
    assert text.index("## wizard title") < text.index("## kms title")


def test_skipped_scenario_is_reported_not_dropped(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    skipped = ScenarioResult("hsm_dispatch", "HSM", skipped="not in the tree yet")
    report.write(out, [skipped], MACHINE)
    assert "| HSM | not run: not in the tree yet |" in out.read_text()


def test_parse_importtime_sums_self_time_per_package():
    stderr = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:      1000 |       1000 |     botocore.exceptions",
        "import time:      2000 |       3000 |   botocore",
        "import time:       500 |       3500 | shared.platform.crypto",
        "some warning line",
    ])
    assert parse_importtime(stderr) == {"botocore": 3.0, "shared": 0.5}


def test_pick_event_prefers_a_success_sample_of_the_function_itself():
    names = ["oauth_url", "oauth_callback", "hsm_rules"]
    chosen = pick_event("oauth_callback", names)
    assert chosen is not None and chosen.stem.startswith("oauth_callback_")
    assert "denied" not in chosen.stem and "no_cookie" not in chosen.stem
    assert pick_event("no_such_function", names) is None


def test_cold_start_covers_every_function_of_the_template():
    """The template holds Fn::ForEach loops too (alarms): the harness must still find each
    function, with its own timeout."""
    from bench.cold_start import functions_in_template
    from bench.common import template_timeout
    from devstack.template import function_handlers

    found = functions_in_template()
    assert set(found) == {h.split("/")[1] for h in function_handlers().values()}
    assert found["hsm_worker"]["timeout"] == template_timeout("hsm_worker") == 120
    assert found["oauth_url"]["route"] is not None and found["hsm_dispatch"]["route"] is None
