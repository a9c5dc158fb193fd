"""Join, SignCSR and who may call what, over real mTLS on loopback."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from cryptography import x509

from federation.client import Identity, RegistryUnavailable
from federation.controlplane import meshfed_pb2 as pb
from federation.controlplane import meshfed_pb2_grpc as pbg
from federation.errors import InvalidToken, PermissionDenied
from tests.controlplane.conftest import Federation
from trust_bundle import (
    agent_id,
    cluster_entitlement,
    create_intermediate_ca,
    create_root_ca,
    generate_key,
    issue_svid,
    make_csr,
)


def spiffe_of(identity: Identity) -> str:
    san = identity.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return san.value.get_values_for_type(x509.UniformResourceIdentifier)[0]


async def test_join_issues_an_svid_once_per_token(fed: Federation) -> None:
    token = await fed.token("east")
    identity = await fed.join("east", "agent", token)
    assert spiffe_of(identity) == "spiffe://east.meshfed.test/meshfed/agent/east"
    assert identity.spiffe_id == spiffe_of(identity)
    assert b"BEGIN CERTIFICATE" in identity.bundle_pem
    with pytest.raises(InvalidToken, match="already used"):
        await fed.join("east", "agent", token)


async def test_expired_and_forged_tokens_are_refused(fed: Federation) -> None:
    token = await fed.token("east", ttl=timedelta(seconds=30))
    fed.clock.offset = timedelta(minutes=1)
    with pytest.raises(InvalidToken, match="expired"):
        await fed.join("east", "agent", token)
    token_id = token.split(".")[0]
    with pytest.raises(InvalidToken):
        await fed.join("east", "agent", f"{token_id}.forged-secret")


async def test_a_token_buys_only_its_own_clusters_identity(fed: Federation) -> None:
    token = await fed.token("east")
    with pytest.raises(PermissionDenied):
        # east's token, CSR for west's agent (in west's trust domain)
        from federation.client import join

        await join(
            fed.plane.join_address,
            token,
            cluster="west",
            component="agent",
            trust_domain="west.meshfed.test",
            ca_pem=await fed.bundle(),
        )


async def test_join_port_serves_nothing_else(fed: Federation) -> None:
    creds = grpc.ssl_channel_credentials(await fed.bundle())
    async with grpc.aio.secure_channel(fed.plane.join_address, creds) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pbg.ControlPlaneStub(channel).ReportHealth(pb.HealthReport(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_mtls_port_refuses_a_caller_without_a_certificate(fed: Federation) -> None:
    creds = grpc.ssl_channel_credentials(await fed.bundle())
    async with grpc.aio.secure_channel(fed.plane.address, creds) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pbg.ControlPlaneStub(channel).ReportHealth(pb.HealthReport(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails


def _foreign_identity(bundle: bytes, self_signed: bool) -> Identity:
    """An SVID for east's agent from a root the registry does not trust."""
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives import serialization

    now = datetime.now(UTC)
    root = create_root_ca(now)
    key = generate_key()
    spiffe = agent_id("east.meshfed.test", "east")
    if self_signed:
        issuer = root
        leaf = root.certificate
        chain = leaf.public_bytes(serialization.Encoding.PEM)
        return Identity(str(spiffe), issuer.key.unencrypted_pkcs8_pem(), chain, bundle)
    inter = create_intermediate_ca(root, "east", "east.meshfed.test", now)
    entitlement = cluster_entitlement("east.meshfed.test", "east")
    svid = issue_svid(make_csr(key, spiffe), inter, entitlement, now)
    return Identity(str(spiffe), key.unencrypted_pkcs8_pem(), svid.chain_pem(), bundle)


@pytest.mark.parametrize("self_signed", [True, False], ids=["self-signed", "other-root"])
async def test_forged_client_certificates_are_refused(fed: Federation, self_signed: bool) -> None:
    forged = fed.client(_foreign_identity(await fed.bundle(), self_signed))
    with pytest.raises(RegistryUnavailable):  # refused in the handshake
        await forged.report_health([])


async def test_cluster_ca_of_another_cluster_cannot_mint_identities(fed: Federation) -> None:
    """west's CA (e.g. handed to west's mesh) signing "east's agent" in east's domain
    fails TLS (name constraints); in west's own domain fails the identity check."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    west_ca = await fed.trust._load_ca("west")  # the CA an operator exported for west's mesh
    key = generate_key()
    spiffe = agent_id("west.meshfed.test", "east")  # east's agent path, west's domain
    svid = issue_svid(
        make_csr(key, spiffe), west_ca, cluster_entitlement("west.meshfed.test", "east"), now
    )
    forged = fed.client(
        Identity(str(spiffe), key.unencrypted_pkcs8_pem(), svid.chain_pem(), await fed.bundle())
    )
    with pytest.raises(PermissionDenied):
        await forged.report_health([])


async def test_renew_own_identity_only(fed: Federation) -> None:
    client = await fed.join_client("east", "gateway")
    old = client.identity
    renewed = await client.renew()
    assert renewed.spiffe_id == old.spiffe_id
    assert renewed.chain_pem != old.chain_pem and renewed.key_pem != old.key_pem
    assert await client.report_health([]) == []  # the renewed identity works
    # A CSR for another identity is refused.
    key = generate_key()
    other = make_csr(key, agent_id("east.meshfed.test", "east"))
    stub = pbg.ControlPlaneStub(client._channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignCSR(pb.SignCSRRequest(csr_pem=other), timeout=5)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_garbage_csr_is_invalid_argument_naming_the_field(fed: Federation) -> None:
    client = await fed.join_client("east", "agent")
    stub = pbg.ControlPlaneStub(client._channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignCSR(pb.SignCSRRequest(csr_pem=b"not a csr"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("csr_pem:")
    assert "Traceback" not in err.value.details()


async def test_roles_agent_cannot_report_health_gateway_cannot_report_endpoints(
    fed: Federation,
) -> None:
    agent = await fed.join_client("east", "agent")
    gateway = await fed.join_client("east", "gateway")
    with pytest.raises(PermissionDenied):
        await agent.report_health([])
    with pytest.raises(PermissionDenied):
        async with gateway.report_endpoints() as report:
            await report.full_state([])


async def test_watch_of_another_cluster_is_refused(fed: Federation) -> None:
    agent = await fed.join_client("east", "agent")
    with pytest.raises(PermissionDenied):
        async for _ in agent.watch("west"):
            break
