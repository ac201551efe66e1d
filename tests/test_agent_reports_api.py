"""The performance endpoints: off by default, bearer token, loopback opt-out, contents."""

from __future__ import annotations

import pytest

from .agent_harness import TOKEN, running_agent


def test_the_endpoints_are_off_unless_enabled() -> None:
    """With HA_AGENT_TRACING_REPORTS_API unset they do not exist."""
    with running_agent(reports_api="off") as agent:
        agent.chat("Hello")
        assert agent.api("/reports").status_code == 404
        assert agent.api("/summary").status_code == 404


@pytest.mark.parametrize(
    ("token", "status"), [(None, 401), ("wrong-token", 401), (TOKEN[:-1], 401), (TOKEN, 200)]
)
def test_every_endpoint_requires_the_bearer_token(token: str | None, status: int) -> None:
    """Missing or wrong tokens are refused with 401 and WWW-Authenticate; the right one passes."""
    with running_agent() as agent:
        for path in ("/reports", "/summary", "/export", "/stats", "/insights", "/alerts"):
            response = agent.api(path, token=token)
            assert response.status_code == status, path
            if status == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")


def test_enabled_without_a_token_answers_503_saying_what_to_set() -> None:
    """On, but no token and no loopback opt-out: 503 naming the variable."""
    with running_agent(api_token=None) as agent:
        response = agent.api("/reports", token=None)
    assert response.status_code == 503
    assert "HA_AGENT_TRACING_API_TOKEN" in response.json()["detail"]


def test_loopback_development_may_opt_out_explicitly() -> None:
    """HA_AGENT_TRACING_API_ALLOW_LOOPBACK=true lets a loopback client in without a token."""
    with running_agent(api_token=None, api_allow_loopback=True) as agent:
        assert agent.api("/reports", token=None).status_code == 200


def test_reports_summary_export_and_one_trace() -> None:
    """The endpoints serve what the tracker holds; performance calls never become reports."""
    with running_agent() as agent:
        for message in ("Hello", "Which lights are on?", "Hello"):
            agent.chat(message)
        agent.reports(3)
        listing = agent.api("/reports?operation=chat_request&limit=2").json()
        summary = agent.api("/summary").json()
        export = agent.api("/export")
        trace_id = listing["reports"][-1]["trace_id"]
        one = agent.api(f"/reports/{trace_id}")
        upper = agent.api(f"/reports/{trace_id.upper()}")
        missing = agent.api("/reports/" + "0" * 32)
        malformed = agent.api("/reports/not-a-trace")
        bad_limit = agent.api("/reports?limit=-1")
        stats = agent.api("/stats").json()
        operations = {r["operation"] for r in agent.api("/reports").json()["reports"]}
    assert listing["count"] == 2
    assert len(listing["reports"]) == 2
    chat = summary["chat_request"]
    assert chat["count"] == 3
    assert set(chat["total_duration"]) == {"count", "mean", "p50", "p95", "p99", "max"}
    assert chat["metrics"]["openai_api_call"]["count"] == 4
    assert export.headers["content-disposition"].startswith("attachment")
    assert len(export.json()) == 3
    assert one.status_code == 200 and one.json()["trace_id"] == trace_id
    assert upper.status_code == 200
    assert missing.status_code == 404
    assert malformed.status_code == 422
    assert bad_limit.status_code == 422
    assert stats["processor"]["reports"] == 3
    assert operations == {"chat_request"}, "reading reports made no report"


def test_insights_name_the_bottleneck_of_the_stored_reports() -> None:
    """GET /insights is `analyze` over the stored reports: the bottleneck, shares, trace ids."""
    with running_agent(model_latency_ms=40, home_latency_ms=10) as agent:
        for message in ("Switch on the coffee maker and turn on the office fan", "Which lights are on?"):
            assert agent.chat(message).status_code == 200
        reports = agent.reports(2)
        body = agent.api("/insights?top=1").json()
        nightly = agent.api("/insights?operation=nightly").json()
        assert (nightly["count"], nightly["in_range"], nightly["operations"]) == (0, 0, {})
        assert agent.api("/insights?top=-1").status_code == 422
    found = body["operations"]["chat_request"]
    assert body["count"] == 2 and found["requests"] == 2
    assert found["bottleneck"]["name"] == "openai_api_call"
    assert len(found["critical_paths"]) == 1
    assert (
        found["critical_paths"][0]["trace_id"] == max(reports, key=lambda r: r["total_duration"])["trace_id"]
    )
    assert found["concurrency"]["metrics"] == ["tool_execution"]
