"""The copies record at the size 100,000 bound namespaces need, through the real apiserver.

A fifth of them under a Private registry is 52,500 Secret copies: more than the record's plain text
fits in a ConfigMap. The apiserver must take it gzipped in binaryData (its limit counts binaryData
as bytes, not as their base64), and a new leader must read it back whole.
"""

from __future__ import annotations

import random
import string
from typing import Any

import kubernetes
import pytest

from webhook.service.writer.record import COMPRESSED_KEY, CopiesRecord, Record, RecordTooLarge

NAME = "chaos-registry-webhook-copies"


def read_back(api: kubernetes.client.ApiClient, namespace: str) -> tuple[Record | None, Any]:
    """The record as a new leader reads it, and the ConfigMap as stored."""
    reader = CopiesRecord(api, namespace, NAME, 30.0)
    reader.load()
    return reader.entries, kubernetes.client.CoreV1Api(api).read_namespaced_config_map(NAME, namespace)


def test_a_record_of_52500_copies_is_saved_and_read_back_whole(
    kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    copies = {(f"bench-a{i // 40}-o{i % 3}-p{i % 9}-i{i % 27}-{i}", "acme-pull"): "chaos-system/acme-pull"
              for i in range(52_500)}  # fmt: skip
    writer = CopiesRecord(kube_api, namespace, NAME, 30.0)
    writer.load()
    writer.save(copies)
    entries, configmap = read_back(kube_api, namespace)
    assert entries == copies
    assert set(configmap.binary_data or {}) == {COMPRESSED_KEY} and not configmap.data

    # Back under the plain limit: the plain keys again, and the packed one gone.
    fewer = dict(list(copies.items())[:1_000])
    writer.save(fewer)
    entries, configmap = read_back(kube_api, namespace)
    assert entries == fewer
    assert not configmap.binary_data and set(configmap.data) == {"copies.json", "copies.v2.json"}


def test_a_record_beyond_what_gzip_fits_is_refused_before_any_request(
    kube_api: kubernetes.client.ApiClient, namespace: str
) -> None:
    names = random.Random(11)
    letters = string.ascii_letters + string.digits
    copies = {
        ("".join(names.choices(letters, k=40)), "acme-pull"): "chaos-system/acme-pull" for _ in range(60_000)
    }
    writer = CopiesRecord(kube_api, namespace, NAME, 30.0)
    writer.load()
    with pytest.raises(RecordTooLarge):
        writer.save(copies)
    assert writer.entries == {}
