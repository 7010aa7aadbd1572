"""Which WhatsApp Business accounts (WABAs) and phone numbers the tenant's token can use.

Meta's path for a user token: the person's businesses (/me/businesses), each business's
owned and client WABAs, then each WABA's phone numbers. The per-business and per-WABA reads go
out as Graph batches (50 per call), so a tenant with many businesses costs few requests. A WABA
reachable through two businesses appears once. Graph only: no database here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from shared.meta.errors import MetaError, MetaPermissionDenied, MetaRequestError
from shared.platform.observability import logger
from shared.whatsapp.senders import max_per_second_for

if TYPE_CHECKING:
    from shared.meta.graph import GraphClient

WABA_FIELDS = "id,name,timezone_id,currency,owner_business_info"
PHONE_FIELDS = ("id,display_phone_number,verified_name,quality_rating,code_verification_status,"
                "name_status,status,platform_type,throughput{level},"
                "whatsapp_business_manager_messaging_limit,messaging_limit_tier")
PAGE_SIZE = 100
WABA_EDGES = (("owned", "owned_whatsapp_business_accounts"),
              ("client", "client_whatsapp_business_accounts"))


@dataclass(frozen=True)
class PhoneNumberInfo:
    id: str
    display_phone_number: str | None
    verified_name: str | None
    quality_rating: str | None
    messaging_limit_tier: str | None
    throughput_level: str | None
    status: str | None

    @classmethod
    def from_graph(cls, item: dict[str, Any]) -> PhoneNumberInfo:
        throughput = item.get("throughput")
        return cls(
            id=str(item["id"]),
            display_phone_number=item.get("display_phone_number"),
            verified_name=item.get("verified_name"),
            quality_rating=item.get("quality_rating"),
            # messaging_limit_tier is deprecated; read it only when the new field is missing.
            messaging_limit_tier=(item.get("whatsapp_business_manager_messaging_limit")
                                  or item.get("messaging_limit_tier")),
            throughput_level=throughput.get("level") if isinstance(throughput, dict) else None,
            status=item.get("status"),
        )

    @property
    def max_per_second(self) -> int:
        return max_per_second_for(self.throughput_level)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "display_phone_number": self.display_phone_number,
            "verified_name": self.verified_name,
            "quality_rating": self.quality_rating,
            "messaging_limit_tier": self.messaging_limit_tier,
            "throughput_level": self.throughput_level,
            "max_per_second": self.max_per_second,
            "status": self.status,
        }


def _relative(path: str, params: dict[str, Any]) -> dict[str, str]:
    return {"method": "GET", "relative_url": f"{path}?{urlencode(params)}"}


def _drain(graph: GraphClient, path: str, params: dict[str, Any], first: Any) -> list[Any]:
    """Items of a first page that came from a batch, plus any further pages."""
    # Local: shared.meta.graph (httpx) is loaded by whoever built `graph`, not by importing this
    # module (whatsapp_connect's handler imports it and may never call Meta).
    from shared.meta.graph_core import next_page_params, page_items

    items = list(page_items(first))
    following = next_page_params(first, params)
    if following is not None:
        items += list(graph.paginate(path, following))
    return items


def _batched_edges(graph: GraphClient, requests: list[tuple[str, dict[str, Any]]]
                   ) -> list[list[Any] | MetaError]:
    """GET many edges in Graph batches; each result is its full item list or the MetaError."""
    answers = graph.batch([_relative(path, params) for path, params in requests])
    results: list[list[Any] | MetaError] = []
    for (path, params), answer in zip(requests, answers, strict=True):
        if isinstance(answer, MetaError):
            if not isinstance(answer, (MetaPermissionDenied, MetaRequestError)):
                raise answer  # token, throttling, outage: the whole answer is wrong
            results.append(answer)
        else:
            results.append(_drain(graph, path, params, answer))
    return results


def list_accounts(graph: GraphClient) -> list[dict[str, Any]]:
    businesses = list(graph.paginate("me/businesses", {"fields": "id,name", "limit": PAGE_SIZE}))
    requests = [(f"{b['id']}/{edge}", {"fields": WABA_FIELDS, "limit": PAGE_SIZE})
                for b in businesses for _, edge in WABA_EDGES]
    wabas: dict[str, dict[str, Any]] = {}
    pairs = [(b, ownership) for b in businesses for ownership, _ in WABA_EDGES]
    for (business, ownership), result in zip(pairs, _batched_edges(graph, requests),
                                             strict=True):
        if isinstance(result, MetaError):
            # A business whose WABAs this person may not see: skip it, keep the others.
            logger.info("whatsapp_business_skipped", extra={"meta_code": result.code})
            continue
        for waba in result:
            waba_id = str(waba["id"])
            known = wabas.get(waba_id)
            if known is not None and (known["ownership"] == "owned" or ownership == "client"):
                continue  # each WABA once; its owner's view wins over a client's
            owner = waba.get("owner_business_info") or {}
            wabas[waba_id] = {
                "id": waba_id,
                "name": waba.get("name"),
                "timezone_id": waba.get("timezone_id"),
                "currency": waba.get("currency"),
                "ownership": ownership,
                "business_id": str(owner.get("id") or business["id"]),
                "business_name": (business.get("name") if ownership == "owned"
                                  else owner.get("name")),
                "phone_numbers": [],
            }
    phone_requests = [(f"{waba_id}/phone_numbers", {"fields": PHONE_FIELDS, "limit": PAGE_SIZE})
                      for waba_id in wabas]
    for waba, result in zip(list(wabas.values()), _batched_edges(graph, phone_requests),
                            strict=True):
        if isinstance(result, MetaError):
            logger.info("whatsapp_waba_phones_skipped", extra={"meta_code": result.code})
            continue
        waba["phone_numbers"] = [PhoneNumberInfo.from_graph(p).public() for p in result]
    return sorted(wabas.values(), key=lambda w: (str(w["name"] or ""), w["id"]))


def waba_phone_numbers(graph: GraphClient, waba_id: str) -> list[PhoneNumberInfo]:
    """The WABA's numbers; Meta's permission/unknown-object errors propagate to the caller."""
    items = graph.paginate(f"{waba_id}/phone_numbers", {"fields": PHONE_FIELDS,
                                                        "limit": PAGE_SIZE})
    return [PhoneNumberInfo.from_graph(item) for item in items]
