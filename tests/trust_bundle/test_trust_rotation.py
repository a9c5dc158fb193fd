"""The pure rotation state machine, bundle merge/update rules and renewal decisions."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trust_bundle import rotation
from trust_bundle.ca import create_intermediate_ca, create_root_ca
from trust_bundle.errors import InvalidBundle, RotationRefused, TrustError
from trust_bundle.merge import accept_update, merge_bundles
from trust_bundle.renewal import jitter_from_seed, renewal_decision, renewal_time
from trust_bundle.rotation import Stage
from trust_bundle.spiffe_bundle import SpiffeBundle, certificate_fingerprint

TD = "a.meshfed.test"


@pytest.fixture(scope="module")
def roots(now):
    return create_root_ca(now), create_root_ca(now)


def start(roots, now, clusters=("a", "b")):
    return rotation.initial_state(roots[0].certificate, clusters, now, refresh_hint=60)


# ------------------------------------------------------------------ rotation


def test_full_rotation_walk(roots, now):
    old, new = roots
    s0 = start(roots, now)
    assert rotation.trusted_roots(s0) == (old.certificate,) and s0.sequence == 1
    s1 = rotation.prepare(s0, new.certificate, now)
    assert s1.stage is Stage.PROPAGATING and s1.sequence == 2
    assert rotation.trusted_roots(s1) == (old.certificate, new.certificate)
    assert rotation.signing_root(s1) == old.certificate
    assert rotation.bundle_for(s1, TD).sequence == 2
    s2 = rotation.report_bundle(rotation.report_bundle(s1, "a", 2, now), "b", 2, now)
    assert rotation.propagation_status(s2, now).complete
    s3 = rotation.activate(s2, now)
    assert s3.stage is Stage.ACTIVE and s3.sequence == 2
    assert rotation.signing_root(s3) == new.certificate
    s4 = rotation.retire(s3, [], now)
    assert s4.stage is Stage.STABLE and s4.sequence == 3
    assert rotation.trusted_roots(s4) == (new.certificate,)
    assert s0.stage is Stage.STABLE  # states are values: nothing mutated


def test_transitions_refused_out_of_order(roots, now):
    old, new = roots
    s0 = start(roots, now)
    for step in (
        lambda s: rotation.activate(s, now),
        lambda s: rotation.retire(s, [], now),
        lambda s: rotation.abort(s, now),
    ):
        with pytest.raises(RotationRefused):
            step(s0)
    s1 = rotation.prepare(s0, new.certificate, now)
    with pytest.raises(RotationRefused, match="needs stage stable"):
        rotation.prepare(s1, new.certificate, now)
    with pytest.raises(RotationRefused, match="needs stage active"):
        rotation.retire(s1, [], now)
    with pytest.raises(RotationRefused, match="is the current root"):
        rotation.prepare(s0, old.certificate, now)


def test_prepare_refuses_an_unusable_root(pki, roots, now):
    s0 = start(roots, now)
    with pytest.raises(RotationRefused, match="not a usable root"):
        rotation.prepare(s0, pki.a.certificate, now)
    expired = create_root_ca(now - timedelta(days=3), lifetime=timedelta(days=1))
    with pytest.raises(RotationRefused, match="expired"):
        rotation.prepare(s0, expired.certificate, now)


def test_propagation_waits_for_every_cluster_or_three_refresh_hints(roots, now):
    s1 = rotation.prepare(start(roots, now), roots[1].certificate, now)
    s1 = rotation.report_bundle(s1, "a", s1.sequence, now)
    status = rotation.propagation_status(s1, now + timedelta(seconds=179))
    assert not status.complete and status.pending == {"b"}
    with pytest.raises(RotationRefused, match="waiting for b"):
        rotation.activate(s1, now + timedelta(seconds=179))
    assert rotation.propagation_status(s1, now + timedelta(seconds=180)).complete  # 3 x 60 s
    rotation.activate(s1, now + timedelta(seconds=180))
    # an old sequence does not count as having the new bundle
    s2 = rotation.report_bundle(s1, "b", s1.sequence - 1, now)
    assert rotation.propagation_status(s2, now).pending == {"b"}


def test_reports_are_checked(roots, now):
    s1 = rotation.prepare(start(roots, now), roots[1].certificate, now)
    with pytest.raises(RotationRefused, match="unknown cluster"):
        rotation.report_bundle(s1, "zz", 2, now)
    with pytest.raises(RotationRefused, match="never published"):
        rotation.report_bundle(s1, "a", 99, now)
    high = rotation.report_bundle(s1, "a", 2, now)
    assert rotation.report_bundle(high, "a", 1, now).ack_map()["a"] == 2  # highest wins


def test_membership_change_requires_the_new_cluster_to_report(roots, now):
    s1 = rotation.prepare(start(roots, now), roots[1].certificate, now)
    s1 = rotation.report_bundle(rotation.report_bundle(s1, "a", 2, now), "b", 2, now)
    s2 = rotation.with_clusters(s1, {"a", "b", "c"})
    assert rotation.propagation_status(s2, now).pending == {"c"}
    assert rotation.with_clusters(s2, {"a"}).ack_map() == {"a": 2}


def test_retire_refuses_while_something_chains_only_to_the_old_root(issue, roots, now):
    old, new = roots
    old_a = create_intermediate_ca(old, "a", TD, now)
    new_a = create_intermediate_ca(new, "a", TD, now)
    svid_old, svid_new = issue(old_a).svid, issue(new_a).svid
    s = rotation.prepare(start(roots, now), new.certificate, now)
    s = rotation.activate(s, now + timedelta(seconds=180))
    with pytest.raises(RotationRefused, match="1 certificate"):
        rotation.retire(s, [(svid_old.certificate, old_a.certificate)], now)
    with pytest.raises(RotationRefused):
        rotation.retire(s, [(old_a.certificate,)], now)
    # once the old SVID has expired it no longer blocks
    later = svid_old.not_after + timedelta(seconds=1)
    assert rotation.retire(s, [(svid_old.certificate, old_a.certificate)], later).next is None
    assert rotation.retire(s, [(svid_new.certificate, new_a.certificate)], now).next is None


def test_retire_refuses_to_empty_the_bundle(roots, now):
    s = start(roots, now)
    forged = replace(s, stage=Stage.ACTIVE)  # a corrupted persisted state
    with pytest.raises(RotationRefused, match="empty the bundle"):
        rotation.retire(forged, [], now)


def test_abort_before_activation_only(roots, now):
    s1 = rotation.prepare(start(roots, now), roots[1].certificate, now)
    s2 = rotation.abort(s1, now)
    assert s2.next is None and s2.sequence == 3 and s2.stage is Stage.STABLE
    s3 = rotation.activate(s1, now + timedelta(seconds=180))
    with pytest.raises(RotationRefused, match="only possible while propagating"):
        rotation.abort(s3, now)


def test_initial_state_requires_a_positive_hint(roots, now):
    with pytest.raises(RotationRefused):
        rotation.initial_state(roots[0].certificate, (), now, refresh_hint=0)


# ------------------------------------------------------------------ merge


def test_merge_adds_and_prunes_but_never_to_empty(roots):
    a, b = roots[0].certificate, roots[1].certificate
    base = SpiffeBundle(TD, (a,), 4, 300)
    update = SpiffeBundle(TD, (b,), 5, 60)
    merged = merge_bundles(base, update)
    assert merged.x509_authorities == (a, b) and merged.sequence == 6 and merged.refresh_hint == 60
    pruned = merge_bundles(merged, merged, remove=[certificate_fingerprint(a)])
    assert pruned.x509_authorities == (b,) and pruned.sequence == 7
    assert merge_bundles(update, update) == SpiffeBundle(TD, (b,), 5, 60)  # no-op keeps sequence
    with pytest.raises(InvalidBundle, match="prune the bundle to empty"):
        merge_bundles(base, update, remove=[certificate_fingerprint(a), certificate_fingerprint(b)])
    with pytest.raises(InvalidBundle, match="cannot merge"):
        merge_bundles(base, SpiffeBundle("other.test", (b,), 1))


def test_accept_update_rejects_rollback_and_reuse(roots):
    a, b = roots[0].certificate, roots[1].certificate
    held = SpiffeBundle(TD, (a,), 5, 60)
    assert accept_update(None, held) is held
    assert accept_update(held, SpiffeBundle(TD, (a, b), 6, 60)).sequence == 6
    assert accept_update(held, SpiffeBundle(TD, (a,), 5, 60)) is held
    with pytest.raises(InvalidBundle, match="rollback"):
        accept_update(held, SpiffeBundle(TD, (a,), 4, 60))
    with pytest.raises(InvalidBundle, match="reused"):
        accept_update(held, SpiffeBundle(TD, (b,), 5, 60))
    with pytest.raises(InvalidBundle, match="offered for"):
        accept_update(held, SpiffeBundle("other.test", (a,), 9))
    with pytest.raises(InvalidBundle, match="no spiffe_sequence"):
        accept_update(held, SpiffeBundle(TD, (a,)))
    with pytest.raises(InvalidBundle, match=r"no X\.509"):
        accept_update(held, SpiffeBundle(TD, (), 9))


# ------------------------------------------------------------------ renewal


def test_renewal_at_half_lifetime_with_jitter(now):
    nb, na = now, now + timedelta(hours=24)
    assert renewal_time(nb, na, 0.0) == now + timedelta(hours=12)
    assert renewal_time(nb, na, 0.5) == now + timedelta(hours=12) - timedelta(hours=1.2)
    d = renewal_decision(nb, na, now + timedelta(hours=11), 0.0)
    assert not d.renew and d.reason == "not yet due"
    assert renewal_decision(nb, na, now + timedelta(hours=12), 0.0).renew
    assert renewal_decision(nb, na, na + timedelta(seconds=1), 0.0).reason == "expired"
    rotated = renewal_decision(nb, na, now + timedelta(hours=1), 0.3, issued_by_signing_root=False)
    assert rotated.renew and rotated.reason.startswith("root rotation")
    with pytest.raises(TrustError):
        renewal_time(nb, na, 1.0)
    with pytest.raises(TrustError):
        renewal_time(na, nb, 0.0)


@given(st.text(), st.integers(1, 10**7))
def test_jitter_is_deterministic_and_never_past_half_life(seed, seconds):
    jitter = jitter_from_seed(seed)
    assert jitter == jitter_from_seed(seed.encode()) and 0.0 <= jitter < 1.0
    from datetime import UTC, datetime

    nb = datetime(2030, 1, 1, tzinfo=UTC)
    na = nb + timedelta(seconds=seconds)
    at = renewal_time(nb, na, jitter)
    assert nb + (na - nb) * 0.4 - timedelta(microseconds=1) <= at <= nb + (na - nb) / 2
