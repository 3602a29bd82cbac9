"""Copy grants: for one pair of nodes, for a while, from whoever holds the secret."""

from __future__ import annotations

from conpaassql.rpc.grants import grant_allows, make_grant


def test_a_grant_is_for_one_pair_one_while_and_one_secret() -> None:
    grant = make_grant("s3cret", 1, 2, ttl=60, now=1000.0)
    assert grant_allows("s3cret", grant, 1, 2, now=1059.0)
    assert not grant_allows("s3cret", grant, 1, 2, now=1061.0)  # expired
    assert not grant_allows("s3cret", grant, 2, 1, now=1000.0)  # the other way round
    assert not grant_allows("s3cret", grant, 1, 3, now=1000.0)
    assert not grant_allows("other", grant, 1, 2, now=1000.0)
    forged = grant.replace(":1060:", ":9999:")
    assert not grant_allows("s3cret", forged, 1, 2, now=1000.0)
    for bad in (None, "", "1:2", "1:2:3:xyz", grant + "0", " " + grant):
        assert not grant_allows("s3cret", bad, 1, 2, now=1000.0)
