"""A trust chain kept in a cluster Secret, so re-installs and upgrades reuse it.

Rotating a mesh's trust anchor on every install would break every meshed pod (their proxies
trust the old root), so the first install generates the chain and stores it in a Secret applied
as part of the install release; later plans read it back. An issuer close to expiry is re-issued
from the stored anchor key, keeping the anchor. Generation happens once per plan: a mesh's values
builder and the Secret builder of one plan share the chain through `PlanContext.memo`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from adapters.kit.catalogue import ObjectsBuilder, PlanContext
from adapters.kit.certificates import (
    CertificateAuthority,
    CertificateError,
    TrustChain,
    chain_problem,
    generate_trust_chain,
    issue_intermediate,
    validity_left,
)
from adapters.kit.objects import KubeObject

__all__ = ["ANCHOR_CERT", "ANCHOR_KEY", "ISSUER_CERT", "ISSUER_KEY", "StoredTrustChain"]

log = structlog.get_logger(__name__)

ANCHOR_CERT = "ca.crt"
ANCHOR_KEY = "ca.key"
ISSUER_CERT = "issuer.crt"
ISSUER_KEY = "issuer.key"
_KEYS = (ANCHOR_CERT, ANCHOR_KEY, ISSUER_CERT, ISSUER_KEY)


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

    @property
    def _memo_key(self) -> str:
        return f"trust-chain/{self.secret_name}"

    async def chain(self, ctx: PlanContext) -> TrustChain:
        """The stored chain (renewing a near-expiry issuer), or a new one; once per plan."""
        memo = ctx.memo.get(self._memo_key)
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
        ctx.memo[self._memo_key] = chain
        return chain

    async def _read(self, ctx: PlanContext) -> TrustChain | None:
        secret = await ctx.cluster.get("v1", "Secret", self.secret_name, ctx.namespace)
        if secret is None:
            return None
        data = secret.get("data") or {}
        try:
            texts = {key: base64.b64decode(str(data[key])).decode("ascii") for key in _KEYS}
            chain = TrustChain(
                anchor=CertificateAuthority(
                    certificate_pem=texts[ANCHOR_CERT], key_pem=texts[ANCHOR_KEY]
                ),
                issuer=CertificateAuthority(
                    certificate_pem=texts[ISSUER_CERT], key_pem=texts[ISSUER_KEY]
                ),
            )
            chain.anchor.private_key()
            problem = chain_problem(chain.anchor.certificate_pem, chain.issuer.certificate_pem)
        except (KeyError, binascii.Error, UnicodeDecodeError, CertificateError) as exc:
            problem = f"unreadable: {exc}"
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
            return [
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": self.secret_name, "namespace": ctx.namespace},
                    "type": "Opaque",
                    "data": {
                        key: base64.b64encode(text.encode("ascii")).decode("ascii")
                        for key, text in texts.items()
                    },
                }
            ]

        return build
