"""The config model under a fixed budget of seeded mutations of our own templates (tests/unit/config_fuzz.py).

Every case must end in a valid model that the inventory and the report can use, or in a ConfigError
whose every issue names a path, within seconds: no traceback, no hang. A failure prints the case id;
``config_fuzz.case(seed, index)`` rebuilds that file. The longer run is benchmarks/fuzz_config.py.
"""
import collections

import pytest

import config_fuzz

# About 10 ms a case on the 2-core CI machine: the budget costs a few seconds of the unit tier.
CASES = 400
SEED = "unit"


@pytest.fixture(scope="module")
def run():
    """One pass over the budget: failures, how the cases ended, which mutation kinds were made."""
    failures, outcomes, kinds = [], collections.Counter(), set()
    for case_id, description, data in config_fuzz.cases(SEED, CASES):
        kinds.add(description.split(": ", 1)[1].split(" ", 1)[0])
        outcome = {}
        problem = config_fuzz.check(data, outcome=outcome)
        outcomes[outcome.get("ended")] += 1
        if problem:
            failures.append("%s (%s): %s" % (case_id, description, problem))
    return failures, outcomes, kinds


def test_mutated_templates_never_crash_or_hang(run):
    failures = run[0]
    assert not failures, "%d of %d cases failed:\n%s" % (len(failures), CASES, "\n\n".join(failures[:5]))


def test_the_budget_exercises_both_outcomes_and_every_mutation_kind(run):
    # A fuzzer whose cases were all accepted (or all refused at the first byte) would prove nothing.
    _failures, outcomes, kinds = run
    assert set(outcomes) == {"valid", "yaml", "model"} and min(outcomes.values()) >= 20, outcomes
    assert {"replace", "delete", "rename", "duplicate", "insert", "truncate", "nest", "alias"} <= kinds, kinds


def test_the_checker_reports_a_crash_and_a_hang(monkeypatch):
    # The oracle itself must be able to fail.
    def crash(_data, _source):
        raise TypeError("boom")
    monkeypatch.setattr(config_fuzz, "parse_cluster_config", crash)
    assert "crashed" in config_fuzz.check(b"x: 1") and "TypeError: boom" in config_fuzz.check(b"x: 1")

    def hang(_data, _source):
        while True:
            pass
    monkeypatch.setattr(config_fuzz, "parse_cluster_config", hang)
    assert "a hang" in config_fuzz.check(b"x: 1", seconds=0.2)


def test_cases_are_reproducible():
    assert config_fuzz.case(SEED, 17) == config_fuzz.case(SEED, 17)
    assert config_fuzz.case(SEED, 17) != config_fuzz.case(SEED, 18)


@pytest.mark.parametrize("message", ["unknown key 'x'", "must be of type object, got None"])
def test_a_top_level_issue_about_a_field_is_not_accepted_as_whole_document(message):
    assert not config_fuzz.WHOLE_DOCUMENT.search(message)
