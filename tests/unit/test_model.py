"""Kind: three constants that behave as the Enum members they replaced (import enum costs ~4 ms
of every start-up, docs/performance.md)."""

from __future__ import annotations

import copy
import pickle

import pytest

from portpatrol.kinds.http import HttpSpec
from portpatrol.kinds.icmp import IcmpSpec
from portpatrol.kinds.tcp import TcpSpec
from portpatrol.model import Kind, Target


def test_kinds_are_constants_with_their_names_as_values() -> None:
    assert [kind.value for kind in (Kind.TCP, Kind.HTTP, Kind.ICMP)] == ["TCP", "HTTP", "ICMP"]
    assert len({Kind.TCP, Kind.HTTP, Kind.ICMP}) == 3
    assert {Kind.TCP: "a", Kind.HTTP: "b"}[Kind.HTTP] == "b"
    assert Kind.TCP == Kind.TCP
    assert Kind.TCP != Kind.HTTP
    assert repr(Kind.ICMP) == str(Kind.ICMP) == "Kind.ICMP"


def test_a_target_knows_its_kind() -> None:
    assert Target("db", "db:5432", TcpSpec("db", 5432)).kind is Kind.TCP
    assert Target("api", "http://api", HttpSpec("http://api")).kind is Kind.HTTP
    assert Target("gw", "gw", IcmpSpec("gw")).kind is Kind.ICMP


def test_copies_and_pickles_are_the_same_constant() -> None:
    for kind in (Kind.TCP, Kind.HTTP, Kind.ICMP):
        assert copy.copy(kind) is kind
        assert copy.deepcopy(kind) is kind
        assert pickle.loads(pickle.dumps(kind)) is kind


def test_kinds_are_immutable() -> None:
    with pytest.raises(AttributeError):
        Kind.TCP.value = "HTTP"
    assert Kind.TCP.value == "TCP"
