"""GOVERNOR_NONSTICKY_POLL_RATIO: the share of the worker's workflow task polls that take new incidents' first tasks
(issue 15.3: in a storm new pins go ahead of older incidents' soaks). Read from the environment, refused out of range
with the setting named, and given to the real SDK worker."""

from __future__ import annotations

import pydantic
import pytest
from temporalio.testing import WorkflowEnvironment

from governor.settings import WorkerSettings
from workers.worker import build_worker


def test_the_default_favours_new_work_and_the_environment_overrides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().nonsticky_poll_ratio == 0.8
    monkeypatch.setenv("GOVERNOR_NONSTICKY_POLL_RATIO", "0.5")
    assert WorkerSettings().nonsticky_poll_ratio == 0.5


@pytest.mark.parametrize("bad", ["0", "-1", "1.5", "abc", ""])
def test_a_ratio_out_of_range_is_refused_with_the_setting_named(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("GOVERNOR_NONSTICKY_POLL_RATIO", bad)
    with pytest.raises(pydantic.ValidationError, match="nonsticky_poll_ratio"):
        WorkerSettings()


async def test_the_worker_polls_with_the_ratio(time_skipping_env: WorkflowEnvironment) -> None:
    default = build_worker(time_skipping_env.client, "polls-default", [])
    assert default.config()["nonsticky_to_sticky_poll_ratio"] == 0.8
    half = build_worker(time_skipping_env.client, "polls-half", [], nonsticky_poll_ratio=0.5)
    assert half.config()["nonsticky_to_sticky_poll_ratio"] == 0.5
