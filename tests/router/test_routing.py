"""The routing engine: matching semantics, order, health tiers, weights, explanations."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsmesh.model import Priority
from smsmesh.resources import SmsRoute
from smsmesh_router.routing import (
    Decision,
    RoutingInput,
    RoutingTable,
    TargetHealth,
    TargetState,
)

UP = TargetHealth(available=True, reason="bound")
DOWN = TargetHealth(available=False, reason="bind lost")


def route(name: str, targets: list[Any], priority: int = 100, **match: Any) -> SmsRoute:
    return SmsRoute.model_validate(
        {
            "apiVersion": "smsmesh.io/v1alpha1",
            "kind": "SmsRoute",
            "metadata": {"name": name},
            "spec": {
                "priority": priority,
                "match": match,
                "targets": [t if isinstance(t, dict) else {"connection": t} for t in targets],
            },
        }
    )


def msg(
    destination: str = "31612345678",
    region: str | None = "NL",
    sender: str = "Acme",
    application: str = "shop",
    priority: str | Priority = "normal",
    split_key: str | None = None,
) -> RoutingInput:
    return RoutingInput(destination, region, sender, application, priority, split_key)


def decide(
    routes: list[SmsRoute], m: RoutingInput, health: dict[str, TargetHealth] | None = None
) -> Decision:
    table = RoutingTable.compile(routes)
    fast = table.decide(m, health, explain=False)
    full = table.decide(m, health)
    # The explained path and the fast path must always agree.
    assert (fast.route, fast.targets) == (full.route, full.targets)
    assert fast.explanation == ()
    return full


# -- matching ----------------------------------------------------------------------------


def test_destination_prefix_with_or_without_plus_and_longest_reported() -> None:
    routes = [route("nl", ["a"], destinationPrefixes=["+31", "316", "0032"])]
    d = decide(routes, msg("31612345678"))
    assert d.route == "nl"
    assert d.explanation[0].reasons == ("destination prefix 316 matched",)
    assert decide(routes, msg("3212345678", "BE")).route == "nl"  # "0032" means 32
    miss = decide(routes, msg("4915112345678", "DE"))
    assert miss.route is None
    assert miss.explanation[0].reasons == ("destination matches none of prefixes [31, 316, 32]",)


def test_country_match_and_non_geographic_destination() -> None:
    routes = [route("benelux", ["a"], countries=["NL", "BE", "LU"])]
    assert decide(routes, msg(region="BE")).route == "benelux"
    d = decide(routes, msg(region="DE"))
    assert d.route is None
    assert d.explanation[0].reasons == ("country DE not in [BE, LU, NL]",)
    d = decide(routes, msg(destination="80012345678", region=None))
    assert d.route is None
    assert "no country" in d.explanation[0].reasons[0]


def test_sender_globs_are_case_sensitive_and_numeric_globs_normalised() -> None:
    routes = [route("acme", ["a"], senders=["Acme*", "+3197*"])]
    assert decide(routes, msg(sender="Acme")).route == "acme"
    assert decide(routes, msg(sender="AcmeBank")).route == "acme"
    d = decide(routes, msg(sender="Foo"))
    assert d.route is None
    assert d.explanation[0].reasons == ("sender Foo not in [Acme*, 3197*]",)
    assert decide(routes, msg(sender="acme")).route is None
    hit = decide(routes, msg(sender="319712345678"))
    assert hit.explanation[0].reasons == ("sender 319712345678 matched 3197*",)


def test_sender_glob_question_mark_matches_one_character() -> None:
    routes = [route("r", ["a"], senders=["Acme?"])]
    assert decide(routes, msg(sender="Acme1")).route == "r"
    assert decide(routes, msg(sender="Acme")).route is None
    assert decide(routes, msg(sender="Acme12")).route is None


def test_application_and_priority_match() -> None:
    routes = [route("r", ["a"], applications=["shop", "bank"], priorities=["high"])]
    assert decide(routes, msg(application="bank", priority="high")).route == "r"
    assert decide(routes, msg(application="bank", priority=Priority.HIGH)).route == "r"
    d = decide(routes, msg(application="blog", priority="bulk"))
    assert d.route is None
    assert d.explanation[0].reasons == (
        "application blog not in [bank, shop]",
        "priority bulk not in [high]",
    )


def test_all_criteria_must_match_and_values_within_one_are_alternatives() -> None:
    routes = [
        route(
            "r",
            ["a"],
            destinationPrefixes=["31", "32"],
            senders=["Acme*"],
            applications=["shop"],
        )
    ]
    assert decide(routes, msg("3212345678", "BE")).route == "r"  # OR within prefixes
    d = decide(routes, msg(sender="Other"))  # prefix and app match, sender does not
    assert d.route is None
    assert d.explanation[0].matched is False
    assert d.explanation[0].reasons == (
        "destination prefix 31 matched",
        "sender Other not in [Acme*]",
        "application shop in [shop]",
    )


def test_empty_match_is_a_catch_all() -> None:
    d = decide([route("default", ["a"])], msg())
    assert d.route == "default"
    assert d.explanation[0].reasons == ("empty match: takes every message",)


# -- order -------------------------------------------------------------------------------


def test_lower_priority_first_then_name_first_match_wins() -> None:
    routes = [
        route("default", ["c"], priority=1000),
        route("zz-nl", ["b"], priority=10, destinationPrefixes=["31"]),
        route("aa-nl", ["a"], priority=10, destinationPrefixes=["31"]),
    ]
    table = RoutingTable.compile(routes)
    assert table.route_names == ("aa-nl", "zz-nl", "default")
    d = decide(routes, msg())
    assert d.route == "aa-nl"
    assert d.targets == ("a",)
    assert [e.route for e in d.explanation] == ["aa-nl"]  # evaluation stops at the match
    d = decide(routes, msg("4915112345678", "DE"))
    assert d.route == "default"
    assert [(e.route, e.matched) for e in d.explanation] == [
        ("aa-nl", False),
        ("zz-nl", False),
        ("default", True),
    ]


def test_no_route() -> None:
    d = decide([route("nl", ["a"], countries=["NL"])], msg(region="FR"))
    assert (d.route, d.targets, d.target_notes) == (None, (), ())
    assert d.summary == "no route matched (1 evaluated)"
    empty = RoutingTable.compile([]).decide(msg())
    assert empty.route is None
    assert empty.summary == "no routes are configured"


def test_duplicate_route_names_are_refused() -> None:
    with pytest.raises(ValueError, match="given twice"):
        RoutingTable.compile([route("r", ["a"]), route("r", ["b"])])


# -- health ------------------------------------------------------------------------------


def test_targets_keep_route_order_when_healthy() -> None:
    d = decide([route("r", ["a", "b", "c"])], msg(), {"a": UP, "b": UP, "c": UP})
    assert d.targets == ("a", "b", "c")
    assert all(n.state == TargetState.AVAILABLE for n in d.target_notes)
    assert d.summary == "route r matched; first target a"


def test_unhealthy_targets_are_demoted_not_dropped() -> None:
    health = {"a": DOWN, "b": UP, "c": UP}
    d = decide([route("r", ["a", "b", "c"])], msg(), health)
    assert d.targets == ("b", "c", "a")
    note = next(n for n in d.target_notes if n.connection == "a")
    assert note.state == TargetState.UNAVAILABLE
    assert note.reason == "bind lost; kept as a later failover target"
    assert not d.all_unavailable


def test_unknown_health_ranks_between_available_and_unavailable() -> None:
    d = decide([route("r", ["a", "b", "c"])], msg(), {"a": DOWN, "c": UP})
    assert d.targets == ("c", "b", "a")
    assert [n.state for n in d.target_notes] == [
        TargetState.AVAILABLE,
        TargetState.UNKNOWN,
        TargetState.UNAVAILABLE,
    ]


def test_all_targets_down_still_routes_and_says_so() -> None:
    d = decide([route("r", ["a", "b"])], msg(), {"a": DOWN, "b": DOWN})
    assert d.route == "r"
    assert d.targets == ("a", "b")
    assert d.all_unavailable
    assert "none of its targets is available" in d.summary
    assert "waits in the queue" in d.summary


def test_explanation_json_shape() -> None:
    d = decide([route("nl", ["a", "b"], destinationPrefixes=["31"])], msg(), {"a": DOWN, "b": UP})
    assert d.explanation_json() == {
        "summary": "route nl matched; first target b",
        "routes": [{"route": "nl", "matched": True, "reasons": ["destination prefix 31 matched"]}],
        "targets": [
            {"connection": "b", "state": "available", "reason": "bound"},
            {
                "connection": "a",
                "state": "unavailable",
                "reason": "bind lost; kept as a later failover target",
            },
        ],
    }


def test_explanation_never_contains_the_full_destination() -> None:
    d = decide(
        [route("x", ["a"], destinationPrefixes=["44"]), route("y", ["a"])], msg("31612345678")
    )
    assert "31612345678" not in str(d.explanation_json())


# -- weights -----------------------------------------------------------------------------


def weighted(*pairs: tuple[str, int]) -> SmsRoute:
    return route("w", [{"connection": c, "weight": w} for c, w in pairs])


def test_weighted_split_follows_weights_and_is_stable_per_key() -> None:
    r = weighted(("a", 3), ("b", 1), ("z", 0))
    table = RoutingTable.compile([r])
    firsts = Counter(
        table.decide(msg(split_key=f"m{i}"), explain=False).targets[0] for i in range(4000)
    )
    assert set(firsts) == {"a", "b"}  # weight 0 is never first while others are possible
    assert 0.70 < firsts["a"] / 4000 < 0.80
    one = table.decide(msg(split_key="m42")).targets
    assert all(table.decide(msg(split_key="m42")).targets == one for _ in range(5))
    assert one[-1] == "z"


def test_weights_without_split_key_use_route_order() -> None:
    d = decide([weighted(("b", 1), ("a", 100))], msg())
    assert d.targets == ("b", "a")


def test_weighted_order_still_demotes_unhealthy_targets() -> None:
    table = RoutingTable.compile([weighted(("a", 1000), ("b", 1))])
    for i in range(50):
        assert table.decide(msg(split_key=str(i)), {"a": DOWN, "b": UP}).targets == ("b", "a")


# -- properties --------------------------------------------------------------------------

_PREFIXES = st.lists(st.sampled_from(["3", "31", "316", "32", "44", "1"]), max_size=3)
_ROUTES = st.lists(
    st.tuples(
        st.integers(0, 5),
        _PREFIXES,
        st.lists(st.sampled_from(["NL", "BE", "GB"]), max_size=2),
        st.lists(st.sampled_from(["high", "normal", "bulk"]), max_size=2),
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(
    _ROUTES,
    st.sampled_from(["31612345678", "3212345678", "447700900123", "12125551234"]),
    st.sampled_from(["NL", "BE", "GB", "US", None]),
    st.sampled_from(["high", "normal", "bulk"]),
)
def test_first_matching_route_in_order_wins(
    specs: list[tuple[int, list[str], list[str], list[str]]],
    destination: str,
    region: str | None,
    priority: str,
) -> None:
    routes = [
        route(f"r{i}", ["a"], priority=p, destinationPrefixes=pre, countries=c, priorities=pr)
        for i, (p, pre, c, pr) in enumerate(specs)
    ]
    d = decide(routes, msg(destination, region, priority=priority))

    def matches(r: SmsRoute) -> bool:
        m = r.spec.match
        return (
            (
                not m.destination_prefixes
                or any(destination.startswith(x) for x in m.destination_prefixes)
            )
            and (not m.countries or region in m.countries)
            and (not m.priorities or priority in m.priorities)
        )

    ordered = sorted(routes, key=lambda r: (r.spec.priority, r.metadata.name))
    expected = next((r.metadata.name for r in ordered if matches(r)), None)
    assert d.route == expected
    assert all(not e.matched for e in d.explanation[:-1])
