"""Copy grants: for one pair of nodes and one address, for a while, signed by the manager."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from conpaassql.rpc.grants import check_grant, load_public_key, make_grant, public_pem


def test_a_grant_is_for_one_pair_one_while_and_the_managers_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = load_public_key(public_pem(key))
    grant = make_grant(key, 1, 2, "10.0.0.7", ttl=60, now=1000.0)
    found = check_grant(public, grant, 1, 2, now=1059.0)
    assert found is not None and found.address == "10.0.0.7"
    assert check_grant(public, grant, 1, 2, now=1061.0) is None  # expired
    assert check_grant(public, grant, 2, 1, now=1000.0) is None  # the other way round
    assert check_grant(public, grant, 1, 3, now=1000.0) is None
    other = load_public_key(public_pem(ec.generate_private_key(ec.SECP256R1())))
    assert check_grant(other, grant, 1, 2, now=1000.0) is None  # not the manager's
    assert check_grant(None, grant, 1, 2, now=1000.0) is None
    for forged in (grant.replace(":1060:", ":9999:"), grant.replace("10.0.0.7", "10.0.0.8")):
        assert check_grant(public, forged, 1, 2, now=1000.0) is None
    for bad in (None, "", "1:2", "1:2:x:3:zz", grant + "0", " " + grant):
        assert check_grant(public, bad, 1, 2, now=1000.0) is None
