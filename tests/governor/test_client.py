"""The client SDK's pure parts: the visibility query, the UI summary, connection settings and their errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import TLSConfig

from governor.client import (
    GovernorClient,
    GovernorConfigError,
    GovernorUnavailable,
    incidents_query,
    static_summary,
    tls_config,
)
from governor.drill import DrillRequest
from governor.enums import FailureType, Severity
from governor.incident import IncidentReport
from governor.settings import TemporalSettings


def test_open_incidents_query_by_default() -> None:
    assert incidents_query() == "WorkflowType = 'IncidentRecoveryWorkflow' AND ExecutionStatus = 'Running'"


def test_query_filters_on_the_registered_search_attributes() -> None:
    query = incidents_query(
        service="chat", phase="gradual_restore", awaiting_approval=True, open_only=False, dependency="primary-llm"
    )
    assert query == (
        "WorkflowType = 'IncidentRecoveryWorkflow' AND ExecutionStatus != 'ContinuedAsNew'"
        " AND GovernorService = 'chat' AND GovernorDependency = 'primary-llm'"
        " AND RecoveryPhase = 'gradual_restore' AND AwaitingApproval = true"
    )
    assert incidents_query(awaiting_approval=False).endswith("AwaitingApproval = false")


def test_query_refuses_values_that_could_escape_the_quotes() -> None:
    with pytest.raises(ValueError, match="quotes"):
        incidents_query(service="chat' OR 'a'='a")
    with pytest.raises(ValueError):
        incidents_query(phase="meltdown")


def test_static_summary_reads_like_the_design() -> None:
    report = IncidentReport(
        service="chat", dependency="primary-llm", failure_type=FailureType.ERROR_SPIKE, severity=Severity.CRITICAL
    )
    assert static_summary(report) == "chat: error_spike on primary-llm (CRITICAL)"
    drill = report.model_copy(update={"drill": DrillRequest(duration_s=60, requested_by="alice")})
    assert static_summary(drill) == "DRILL chat: error_spike on primary-llm (CRITICAL)"
    assert static_summary(IncidentReport(service="chat", dependency="db")) == "chat: failure reported on db"


def test_tls_from_settings(tmp_path: Path) -> None:
    assert tls_config(TemporalSettings()) is None  # the SDK turns TLS on by itself when an API key is set
    assert tls_config(TemporalSettings(tls=True)) is True
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"CA")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(b"CERT")
    key.write_bytes(b"KEY")
    tls = tls_config(TemporalSettings(tls_ca=ca, tls_cert=cert, tls_key=key))
    assert isinstance(tls, TLSConfig)
    assert (tls.server_root_ca_cert, tls.client_cert, tls.client_private_key) == (b"CA", b"CERT", b"KEY")


def test_tls_errors_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(GovernorConfigError, match="GOVERNOR_TEMPORAL_TLS_CA"):
        tls_config(TemporalSettings(tls_ca=tmp_path / "missing.pem"))
    cert = tmp_path / "c.pem"
    cert.write_bytes(b"CERT")
    with pytest.raises(GovernorConfigError, match="both tls_cert and tls_key"):
        tls_config(TemporalSettings(tls_cert=cert))


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVERNOR_TEMPORAL_ADDRESS", "temporal.internal:7233")
    monkeypatch.setenv("GOVERNOR_TEMPORAL_NAMESPACE", "prod")
    settings = TemporalSettings()
    assert (settings.address, settings.namespace) == ("temporal.internal:7233", "prod")


async def test_connect_to_nothing_is_unavailable_not_a_crash() -> None:
    settings = TemporalSettings(address="127.0.0.1:1")
    with pytest.raises(GovernorUnavailable, match=r"cannot reach Temporal at 127\.0\.0\.1:1 \(namespace default\)"):
        await GovernorClient.connect(settings, rpc_timeout=timedelta(seconds=2))
