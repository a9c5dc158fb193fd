"""Real mTLS on loopback (Python ssl / OpenSSL) across a whole root rotation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from trust_bundle import rotation
from trust_bundle.ca import create_intermediate_ca, create_root_ca
from trust_bundle.errors import RotationRefused
from trust_bundle.exports import pem


def test_gateway_mtls_handshake_authenticates_spiffe_ids(pki, issue, mtls):
    server_id, client_id = issue(pki.b), issue(pki.a)
    roots = pem([pki.root.certificate])
    server = mtls.serve(mtls.context(server_id, roots, server=True))
    with mtls.connect(server.port, mtls.context(client_id, roots, server=False)) as sock:
        assert mtls.roundtrip(sock) == b"ping"
        assert mtls.peer_spiffe_id(sock) == "spiffe://b.meshfed.test/meshfed/gateway/b"
    assert server.peers == ["spiffe://a.meshfed.test/meshfed/gateway/a"]


def test_expired_svid_is_rejected_in_a_handshake(pki, issue, mtls, now):
    past = now - timedelta(days=1)
    past_root = create_root_ca(past)
    past_a = create_intermediate_ca(past_root, "a", "a.meshfed.test", past)
    expired = issue(past_a, past, lifetime=timedelta(hours=1))
    roots = pem([pki.root.certificate, past_root.certificate])
    server = mtls.serve(mtls.context(issue(pki.b), roots, server=True))
    assert mtls.handshake_fails(server.port, mtls.context(expired, roots, server=False))
    assert any("expired" in str(e) for e in server.wait_for_error())


def test_certificate_from_an_untrusted_root_is_rejected(pki, issue, mtls, now):
    stranger_root = create_root_ca(now)
    stranger = create_intermediate_ca(stranger_root, "a", "a.meshfed.test", now)
    roots = pem([pki.root.certificate])
    server = mtls.serve(mtls.context(issue(pki.b), roots, server=True))
    assert mtls.handshake_fails(server.port, mtls.context(issue(stranger), roots, server=False))


def test_rotation_keeps_old_connection_and_new_connections_work_at_every_stage(issue, mtls, now):
    """Two clusters rotate the federation root; B's gateway reloads its trust at each
    stage (new SSLContext for new connections), a connection opened before the
    rotation stays up throughout, and after retire the old root is rejected."""
    old_root = create_root_ca(now)
    a1 = create_intermediate_ca(old_root, "a", "a.meshfed.test", now)
    b1 = create_intermediate_ca(old_root, "b", "b.meshfed.test", now)
    gw_a1, gw_b1 = issue(a1), issue(b1)
    state = rotation.initial_state(old_root.certificate, {"a", "b"}, now, refresh_hint=60)

    def roots() -> bytes:
        return pem(rotation.trusted_roots(state))

    server = mtls.serve(mtls.context(gw_b1, roots(), server=True))
    before = mtls.connect(server.port, mtls.context(gw_a1, roots(), server=False))
    assert mtls.roundtrip(before, b"before") == b"before"

    def check_stage(client, server_identity) -> None:
        server.context = mtls.context(server_identity, roots(), server=True)
        with mtls.connect(server.port, mtls.context(client, roots(), server=False)) as sock:
            assert mtls.roundtrip(sock) == b"ping"
        assert mtls.roundtrip(before, b"still") == b"still"

    check_stage(gw_a1, gw_b1)

    # prepare: the new root joins the bundle
    new_root = create_root_ca(now)
    state = rotation.prepare(state, new_root.certificate, now)
    check_stage(gw_a1, gw_b1)

    # propagate: both clusters report the new sequence
    for cluster in ("a", "b"):
        state = rotation.report_bundle(state, cluster, state.sequence, now)
    check_stage(gw_a1, gw_b1)

    # activate: the new root signs new intermediates; SVIDs move over as they renew
    state = rotation.activate(state, now)
    assert rotation.signing_root(state) == new_root.certificate
    a2 = create_intermediate_ca(new_root, "a", "a.meshfed.test", now)
    b2 = create_intermediate_ca(new_root, "b", "b.meshfed.test", now)
    gw_a2 = issue(a2)
    check_stage(gw_a2, gw_b1)  # A renewed, B not yet
    gw_b2 = issue(b2)
    check_stage(gw_a1, gw_b2)  # B renewed, A's old SVID still accepted
    check_stage(gw_a2, gw_b2)

    # retire refuses while anything live still chains only to the old root
    live_old = [
        (gw_a1.svid.certificate, a1.certificate),
        (a1.certificate,),
        (gw_b1.svid.certificate, b1.certificate),
    ]
    with pytest.raises(RotationRefused, match="still chain only to the old root"):
        rotation.retire(state, live_old, now)
    live_new = [
        (gw_a2.svid.certificate, a2.certificate),
        (gw_b2.svid.certificate, b2.certificate),
        (a2.certificate,),
        (b2.certificate,),
    ]
    state = rotation.retire(state, live_new, now)
    assert rotation.trusted_roots(state) == (new_root.certificate,)
    check_stage(gw_a2, gw_b2)

    # after retire a certificate chaining only to the old root is rejected, both ways
    assert mtls.handshake_fails(server.port, mtls.context(gw_a1, roots(), server=False))
    old_server = mtls.serve(mtls.context(gw_b1, roots(), server=True))
    assert mtls.handshake_fails(old_server.port, mtls.context(gw_a2, roots(), server=False))

    # and the connection opened before the rotation is still up
    assert mtls.roundtrip(before, b"after") == b"after"
    before.close()
