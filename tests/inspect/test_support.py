"""Compromise verdicts need behaviour to judge: windows of fewer than MIN_CONNECTIONS connections lose their flag."""

from __future__ import annotations

import pandas as pd

from netsentry.pipeline.inspect.compromise import MIN_CONNECTIONS, require_support


def test_one_syn_sources_are_not_judged_and_counted() -> None:
    scored = pd.DataFrame(
        {
            "scope": ["target", "spoof-1", "spoof-2", "busy", "busy"],
            "active_flows": [37_000, 1, 1, 40, MIN_CONNECTIONS - 1],
            "flag": [1, 1, 1, 0, 1],
        }
    )
    out, unjudged = require_support(scored)
    assert out["flag"].tolist() == [1, 0, 0, 0, 0]
    assert unjudged == 3  # spoof-1, spoof-2, and busy (flagged only in its thin window)
    assert scored["flag"].tolist() == [1, 1, 1, 0, 1]  # the input is not modified
    same, none = require_support(scored[scored["active_flows"] >= MIN_CONNECTIONS])
    assert none == 0 and same["flag"].tolist() == [1, 0]


def test_support_counts_dns_queries_of_a_one_socket_tunnel() -> None:
    scored = pd.DataFrame({"scope": ["tunnel", "lone"], "flag": [1, 1], "active_flows": [1, 1],
                           "dns_queries_per_min": [150.0, 0.0], "observed_s": [60.0, 60.0]})  # fmt: skip
    kept, unjudged = require_support(scored)
    assert kept["flag"].tolist() == [1, 0] and unjudged == 1


def test_a_connection_held_open_for_a_window_is_judged() -> None:
    """A miner's one pool connection, established and open all window, is behaviour; one lone SYN is not."""
    scored = pd.DataFrame({"scope": ["miner", "lone"], "flag": [1, 1], "active_flows": [1, 1],
                           "idle_persistent_flows_out": [1.0, 0.0]})  # fmt: skip
    kept, unjudged = require_support(scored)
    assert kept["flag"].tolist() == [1, 0] and unjudged == 1


def test_a_mining_protocol_call_is_judged() -> None:
    """A pool login on a window's one fresh connection is decisive evidence; the same lone flow without it is not."""
    scored = pd.DataFrame({"scope": ["miner", "lone"], "flag": [1, 1], "active_flows": [1, 1],
                           "idle_persistent_flows_out": [0.0, 0.0],
                           "mining_messages_out_per_min": [1.0, 0.0]})  # fmt: skip
    kept, unjudged = require_support(scored)
    assert kept["flag"].tolist() == [1, 0] and unjudged == 1
