"""Certificates kept in cluster Secrets, so re-installs and upgrades reuse them.

Rotating a mesh's trust anchor on every install would break every meshed pod (their proxies
trust the old root), and regenerating webhook certificates at every render makes a re-install
rewrite Secrets, webhooks and Deployments for nothing. So the first install generates them and
stores them in a Secret applied as part of the install release (deleted with it); later plans
read them back. What is close to expiry is renewed: an issuer from the stored anchor key (the
anchor stays), a webhook certificate outright. Generation happens once per plan: a mesh's values
builder and the Secret builder of one plan share the result through `PlanContext.memo`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog

from adapters.kit.declare.certificates import (
    CertificateError,
    CertifiedKey,
    TrustChain,
    chain_problem,
    generate_trust_chain,
    hosts_of,
    issue_intermediate,
    self_signed_server,
    validity_left,
)
from adapters.kit.declare.sources import ObjectsBuilder, PlanContext
from adapters.kit.model.objects import KubeObject

__all__ = [
    "ANCHOR_CERT",
    "ANCHOR_KEY",
    "ISSUER_CERT",
    "ISSUER_KEY",
    "StoredServingCertificates",
    "StoredTrustChain",
]

log = structlog.get_logger(__name__)

ANCHOR_CERT = "ca.crt"
ANCHOR_KEY = "ca.key"
ISSUER_CERT = "issuer.crt"
ISSUER_KEY = "issuer.key"
_CHAIN_KEYS = (ANCHOR_CERT, ANCHOR_KEY, ISSUER_CERT, ISSUER_KEY)


async def _read_texts(
    ctx: PlanContext, secret_name: str, keys: Sequence[str]
) -> dict[str, str] | None:
    """The Secret's ``keys`` as text; None when it is missing, lacks a key or is not base64."""
    secret = await ctx.cluster.get("v1", "Secret", secret_name, ctx.namespace)
    if secret is None:
        return None
    data = secret.get("data") or {}
    try:
        return {key: base64.b64decode(str(data[key])).decode("ascii") for key in keys}
    except (KeyError, binascii.Error, UnicodeDecodeError) as exc:
        log.warning(
            "stored certificates unreadable; generating new ones",
            secret=secret_name,
            namespace=ctx.namespace,
            problem=repr(exc),
        )
        return None


def _secret(name: str, namespace: str, texts: Mapping[str, str]) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {
            key: base64.b64encode(text.encode("ascii")).decode("ascii")
            for key, text in texts.items()
        },
    }


@dataclass(frozen=True, kw_only=True)
class StoredTrustChain:
    """A trust anchor and issuer stored in the Secret ``secret_name`` of the request namespace."""

    secret_name: str
    anchor_name: str
    """Common name of the root CA (e.g. ``root.linkerd.cluster.local``)."""
    issuer_name: str
    """Common name of the intermediate CA (e.g. ``identity.linkerd.cluster.local``)."""
    anchor_validity: dt.timedelta = dt.timedelta(days=3650)
    issuer_validity: dt.timedelta = dt.timedelta(days=365)
    renew_issuer_within: dt.timedelta = dt.timedelta(days=30)
    """A stored issuer expiring sooner than this is replaced (signed by the same anchor)."""

    async def chain(self, ctx: PlanContext) -> TrustChain:
        """The stored chain (renewing a near-expiry issuer), or a new one; once per plan."""
        memo_key = f"trust-chain/{self.secret_name}"
        memo = ctx.memo.get(memo_key)
        if isinstance(memo, TrustChain):
            return memo
        stored = await self._read(ctx)
        if stored is None:
            chain = generate_trust_chain(
                anchor_name=self.anchor_name,
                issuer_name=self.issuer_name,
                anchor_validity=self.anchor_validity,
                issuer_validity=self.issuer_validity,
            )
            log.info(
                "generated trust chain",
                mesh=ctx.mesh,
                namespace=ctx.namespace,
                secret=self.secret_name,
            )
        elif validity_left(stored.issuer.certificate) < self.renew_issuer_within:
            chain = TrustChain(
                anchor=stored.anchor,
                issuer=issue_intermediate(
                    stored.anchor, common_name=self.issuer_name, validity=self.issuer_validity
                ),
            )
            log.info("renewed issuer certificate", mesh=ctx.mesh, secret=self.secret_name)
        else:
            chain = stored
        ctx.memo[memo_key] = chain
        return chain

    async def _read(self, ctx: PlanContext) -> TrustChain | None:
        texts = await _read_texts(ctx, self.secret_name, _CHAIN_KEYS)
        if texts is None:
            return None
        chain = TrustChain(
            anchor=CertifiedKey(certificate_pem=texts[ANCHOR_CERT], key_pem=texts[ANCHOR_KEY]),
            issuer=CertifiedKey(certificate_pem=texts[ISSUER_CERT], key_pem=texts[ISSUER_KEY]),
        )
        try:
            chain.anchor.private_key()
            problem = chain_problem(chain.anchor.certificate_pem, chain.issuer.certificate_pem)
        except CertificateError as exc:
            problem = str(exc)
        if problem is not None:
            # Nothing can be reused from a broken chain; a new one is the only way forward.
            log.warning(
                "stored trust chain unusable; generating a new one",
                secret=self.secret_name,
                namespace=ctx.namespace,
                problem=problem,
            )
            return None
        return chain

    def secret(self) -> ObjectsBuilder:
        """An objects builder for the Secret holding the chain (apply it with the install)."""

        async def build(ctx: PlanContext) -> Sequence[KubeObject]:
            chain = await self.chain(ctx)
            texts = {
                ANCHOR_CERT: chain.anchor.certificate_pem,
                ANCHOR_KEY: chain.anchor.key_pem,
                ISSUER_CERT: chain.issuer.certificate_pem,
                ISSUER_KEY: chain.issuer.key_pem,
            }
            return [_secret(self.secret_name, ctx.namespace, texts)]

        return build


@dataclass(frozen=True, kw_only=True)
class StoredServingCertificates:
    """Self-signed serving certificates for webhook Services, kept in the Secret ``secret_name``.

    Each Service ``name`` of the request namespace gets a certificate for
    ``name.<namespace>.svc``, stored under ``name.crt`` and ``name.key``.
    """

    secret_name: str
    services: tuple[str, ...]
    validity: dt.timedelta = dt.timedelta(days=365)
    renew_within: dt.timedelta = dt.timedelta(days=30)

    def _keys(self) -> list[str]:
        return [f"{service}.{part}" for service in self.services for part in ("crt", "key")]

    async def certificates(self, ctx: PlanContext) -> dict[str, CertifiedKey]:
        """Service name → certificate: stored ones still good for their host, else new; once
        per plan."""
        memo_key = f"serving-certificates/{self.secret_name}"
        memo = ctx.memo.get(memo_key)
        if isinstance(memo, dict):
            return memo
        texts = await _read_texts(ctx, self.secret_name, self._keys()) or {}
        found: dict[str, CertifiedKey] = {}
        for service in self.services:
            host = f"{service}.{ctx.namespace}.svc"
            stored = self._usable(texts, service, host)
            if stored is None:
                stored = self_signed_server(host, validity=self.validity)
                log.info("generated serving certificate", host=host, secret=self.secret_name)
            found[service] = stored
        ctx.memo[memo_key] = found
        return found

    def _usable(self, texts: Mapping[str, str], service: str, host: str) -> CertifiedKey | None:
        if f"{service}.crt" not in texts:
            return None
        stored = CertifiedKey(
            certificate_pem=texts[f"{service}.crt"], key_pem=texts[f"{service}.key"]
        )
        try:
            stored.private_key()
            certificate = stored.certificate
        except CertificateError:
            return None
        if host not in hosts_of(certificate) or validity_left(certificate) < self.renew_within:
            return None
        return stored

    def secret(self) -> ObjectsBuilder:
        """An objects builder for the Secret holding the certificates (apply with the install)."""

        async def build(ctx: PlanContext) -> Sequence[KubeObject]:
            texts: dict[str, str] = {}
            for service, pair in (await self.certificates(ctx)).items():
                texts[f"{service}.crt"] = pair.certificate_pem
                texts[f"{service}.key"] = pair.key_pem
            return [_secret(self.secret_name, ctx.namespace, texts)]

        return build
