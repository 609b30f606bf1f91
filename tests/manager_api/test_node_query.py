"""The node query language (document 003 §5.1.2) on node documents: pure logic, no database."""

from __future__ import annotations

import pytest

from manager_api.services.errors import Invalid
from manager_api.services.nodes import query

WEB = {
    "hostname": "hostname1",
    "agentAddress": "192.168.1.165:8081",
    "os": {"name": "Linux", "version": "6.1", "cpus": 4, "architecture": "x86_64"},
    "memory": {"total": 16_000_000_000, "ram": 16_000_000_000},
    "networks": [{"address": "192.168.1.165", "name": "eth0"}, {"address": "fe80::1", "name": "eth1"}],
    "tags": ["appserver", "ssd"],
    "labels": {"zone": "us-east"},
}
HPC = {
    "hostname": "compute-7",
    "os": {"name": "Linux", "cpus": 64},
    "memory": {"total": 256_000_000_000},
    "networks": [{"address": "10.0.0.7", "name": "ib0"}],
    "tags": ["hpc", "appserver"],
    "labels": {"zone": "eu-west"},
}
NODES = {"web": WEB, "hpc": HPC}


def found(text: str) -> set[str]:
    q = query.parse(text)
    return {name for name, document in NODES.items() if q.matches(document)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*", {"web", "hpc"}),
        ("hostname1", {"web"}),
        ("appserver", {"web", "hpc"}),
        ("hostname*", {"web"}),
        ("192.168.1.*", {"web"}),
        ("HOSTNAME1", {"web"}),
        ("networks.address:192.168.1.165", {"web"}),
        ("networks.address:[192.168.1.100 TO 192.168.1.150]", set()),
        ("networks.address:[192.168.1.100 TO 192.168.1.200]", {"web"}),
        ("networks.address:[10.0.0.1 TO 10.0.0.10]", {"hpc"}),
        ("networks.address:{192.168.1.165 TO 192.168.1.200]", set()),
        ("os.cpus:>8", {"hpc"}),
        ("os.cpus:>=4", {"web", "hpc"}),
        ("os.cpus:>4", {"hpc"}),
        ("os.cpus:<8", {"web"}),
        ("os.cpus:<=64", {"web", "hpc"}),
        ("os.cpus:4", {"web"}),
        ("os.cpus:[4 TO 10]", {"web"}),
        ("memory.total:>8000000000 AND networks.address:[192.168.1.100 TO 192.168.1.200]", {"web"}),
        ("tags:appserver AND tags:hpc", {"hpc"}),
        ("tags:appserver AND NOT tags:hpc", {"web"}),
        ("tags:ssd OR tags:hpc", {"web", "hpc"}),
        ("tags:(ssd OR hpc)", {"web", "hpc"}),
        ("-tags:hpc", {"web"}),
        ("labels.zone:us-east", {"web"}),
        ('hostname:"compute-7"', {"hpc"}),
        ("tags:web AND os.cpus:>2", set()),
        ("tags:*", {"web", "hpc"}),
        ("disks.dirName:*", set()),
        ("nope", set()),
        ("hostname1 compute-7", {"web", "hpc"}),
        ("(tags:ssd OR labels.zone:eu-west) AND os.cpus:>32", {"hpc"}),
    ],
)
def test_the_specs_queries_find_their_nodes(text: str, expected: set[str]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize("text", ["a AND (b", "tags:", "os.cpus:[1 TO", "AND", "   "])
def test_a_malformed_query_is_invalid_and_names_the_parameter(text: str) -> None:
    with pytest.raises(Invalid) as caught:
        query.parse(text)
    assert caught.value.message.startswith("Invalid request format: q: ")


@pytest.mark.parametrize("text", ["hostnam~1", "a^2", "/host.*/", '"a b"~3'])
def test_fuzzy_boost_regex_and_proximity_are_refused_by_name(text: str) -> None:
    with pytest.raises(Invalid, match="not supported"):
        query.parse(text)


def test_a_query_over_the_length_limit_is_invalid() -> None:
    with pytest.raises(Invalid, match="longer than"):
        query.parse("a OR " * 500 + "b")


def test_paths_are_quoted_or_escaped_and_a_backslash_makes_a_character_literal() -> None:
    document = {"disks": [{"dirName": "/"}, {"dirName": "/data/db"}], "tags": ["a*b", "axb"]}

    def matches(text: str) -> bool:
        return query.parse(text).matches(document)

    assert matches('disks.dirName:"/"') and matches(r"disks.dirName:\/") and matches(r"disks.dirName:\/data*")
    assert not matches(r"disks.dirName:\/nope*") and matches(r'disks.dirName:"\/data\/db"')
    assert matches(r"tags:a\*b") and query.parse(r"tags:a\*b").matches({"tags": ["axb"]}) is False
    assert query.parse(r"tags:a\**").matches({"tags": ["a*bc"]}) and not query.parse(r"tags:a\**").matches(
        document | {"tags": ["abc"]}
    )
    for text in ("disks.dirName:/", "disks.dirName:/data/db"):
        with pytest.raises(Invalid, match='quote a path, disks.dirName:"/var", or escape it'):
            query.parse(text)
