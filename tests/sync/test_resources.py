"""The Kobo ``/v1/initialization`` resource map: the native copy and its rewrite (spec 5.2, 5.12)."""

from __future__ import annotations

import re

import msgspec
import pytest

from sync.kobo.resources import (
    NATIVE_OBJECT_RESOURCES,
    NATIVE_RESOURCES,
    STORE_API,
    build_resources,
    oidc_configuration,
)

SITE = "http://books.example.org:8080"
PUBLIC = f"{SITE}/calibre"
BASE = f"{PUBLIC}/kobo/abc123def456abc123def456abc123de"

MUST_REWRITE = ("image_host", "image_url_template", "image_url_quality_template", "library_sync", "reading_state")
SHOULD_REWRITE = (
    "library_metadata",
    "tags",
    "tag_items",
    "delete_tag",
    "rename_tag",
    "delete_tag_items",
    "delete_entitlement",
    "add_entitlement",
    "device_auth",
    "device_refresh",
    "user_profile",
    "user_loyalty_benefits",
    "get_tests_request",
    "post_analytics_event",
)
LOCAL_ONLY = ("oauth_host", "reading_services_host")

EXPECTED = {
    "image_host": PUBLIC,
    "image_url_template": f"{BASE}/v1/books/{{ImageId}}/thumbnail/{{Width}}/{{Height}}/false/image.jpg",
    "image_url_quality_template": (
        f"{BASE}/v1/books/{{ImageId}}/thumbnail/{{Width}}/{{Height}}/{{Quality}}/{{IsGreyscale}}/image.jpg"
    ),
    "library_sync": f"{BASE}/v1/library/sync",
    "library_metadata": f"{BASE}/v1/library/{{Ids}}/metadata",
    "reading_state": f"{BASE}/v1/library/{{Ids}}/state",
    "tags": f"{BASE}/v1/library/tags",
    "tag_items": f"{BASE}/v1/library/tags/{{TagId}}/Items",
    "delete_tag": f"{BASE}/v1/library/tags/{{TagId}}",
    "rename_tag": f"{BASE}/v1/library/tags/{{TagId}}",
    "delete_tag_items": f"{BASE}/v1/library/tags/{{TagId}}/items/delete",
    "delete_entitlement": f"{BASE}/v1/library/{{Ids}}",
    "add_entitlement": f"{BASE}/v1/library/{{RevisionIds}}",
    "device_auth": f"{BASE}/v1/auth/device",
    "device_refresh": f"{BASE}/v1/auth/refresh",
    "user_profile": f"{BASE}/v1/user/profile",
    "user_loyalty_benefits": f"{BASE}/v1/user/loyalty/benefits",
    "get_tests_request": f"{BASE}/v1/analytics/gettests",
    "post_analytics_event": f"{BASE}/v1/analytics/event",
}


def _build(*, is_local: bool) -> dict[str, str]:
    return build_resources(NATIVE_RESOURCES, base=BASE, public=PUBLIC, site=SITE, is_local=is_local)


def test_native_map_is_complete_and_all_strings() -> None:
    assert len(NATIVE_RESOURCES) >= 130
    assert all(isinstance(value, str) for value in NATIVE_RESOURCES.values())
    assert list(NATIVE_RESOURCES) == sorted(NATIVE_RESOURCES)


def test_native_map_has_every_key_the_spec_rewrites() -> None:
    missing = set(MUST_REWRITE + SHOULD_REWRITE + LOCAL_ONLY) - set(NATIVE_RESOURCES)
    assert not missing


def test_native_map_keeps_the_keys_firmware_blanks_when_missing() -> None:
    for key in ("instapaper_enabled", "instapaper_env_url", "instapaper_link_account_start"):
        assert NATIVE_RESOURCES[key]
    assert NATIVE_RESOURCES["use_one_store"] == "True"
    assert set(NATIVE_OBJECT_RESOURCES) == {"blackstone_header", "free_books_page"}
    assert not set(NATIVE_OBJECT_RESOURCES) & set(NATIVE_RESOURCES)


def test_native_booleans_are_spelled_as_the_store_sends_them() -> None:
    flags = {key: value for key, value in NATIVE_RESOURCES.items() if value in {"True", "False"}}
    assert len(flags) >= 20
    assert not {value for value in NATIVE_RESOURCES.values() if value.lower() in {"true", "false"}} - {"True", "False"}


def test_native_values_are_the_stores() -> None:
    assert NATIVE_RESOURCES["library_sync"] == f"{STORE_API}/v1/library/sync"
    assert NATIVE_RESOURCES["tag_items"] == f"{STORE_API}/v1/library/tags/{{TagId}}/Items"
    assert NATIVE_RESOURCES["image_url_quality_template"] == (
        "https://cdn.kobo.com/book-images/{ImageId}/{Width}/{Height}/{Quality}/{IsGreyscale}/image.jpg"
    )
    assert NATIVE_RESOURCES["oauth_host"] == "https://oauth.kobo.com"
    assert NATIVE_RESOURCES["reading_services_host"] == "https://readingservices.kobo.com"


@pytest.mark.parametrize("is_local", [True, False])
def test_no_value_points_at_the_store_api_after_rewriting(is_local: bool) -> None:
    resources = _build(is_local=is_local)
    assert [key for key, value in resources.items() if "storeapi.kobo.com" in value] == []


@pytest.mark.parametrize("is_local", [True, False])
def test_rewritten_keys_point_at_our_base_with_its_port_and_prefix(is_local: bool) -> None:
    resources = _build(is_local=is_local)
    assert {key: resources[key] for key in EXPECTED} == EXPECTED


def test_every_store_api_value_keeps_its_path_under_our_base() -> None:
    resources = _build(is_local=False)
    for key, value in NATIVE_RESOURCES.items():
        if value.startswith(STORE_API) and key not in EXPECTED:
            assert resources[key] == BASE + value.removeprefix(STORE_API)


def test_other_values_are_left_alone() -> None:
    resources = _build(is_local=True)
    untouched = {key for key, value in NATIVE_RESOURCES.items() if not value.startswith(STORE_API)}
    untouched -= set(EXPECTED) | set(LOCAL_ONLY)
    assert untouched
    assert {key: resources[key] for key in untouched} == {key: NATIVE_RESOURCES[key] for key in untouched}
    assert set(resources) == set(NATIVE_RESOURCES)


def test_placeholders_keep_the_native_spelling() -> None:
    resources = _build(is_local=True)
    placeholders = set(re.findall(r"\{(\w+)\}", resources["image_url_quality_template"]))
    assert placeholders == {"ImageId", "Width", "Height", "Quality", "IsGreyscale"}
    assert set(re.findall(r"\{(\w+)\}", resources["image_url_template"])) == {"ImageId", "Width", "Height"}
    assert "{Ids}" in resources["reading_state"]
    assert "{TagId}" in resources["tag_items"]
    assert all("{width}" not in value and "{height}" not in value for value in resources.values())


def test_local_mode_points_oauth_and_reading_services_at_us() -> None:
    resources = _build(is_local=True)
    assert resources["oauth_host"] == f"{BASE}/oauth"
    assert resources["reading_services_host"] == SITE


def test_proxy_mode_leaves_oauth_and_reading_services_with_the_store() -> None:
    resources = _build(is_local=False)
    assert resources["oauth_host"] == NATIVE_RESOURCES["oauth_host"]
    assert resources["reading_services_host"] == NATIVE_RESOURCES["reading_services_host"]


def test_input_is_left_untouched() -> None:
    native = dict(NATIVE_RESOURCES)
    before = dict(native)
    resources = build_resources(native, base=BASE, public=PUBLIC, site=SITE, is_local=True)
    assert native == before
    assert resources is not native


def test_a_store_answer_missing_keys_gets_them_and_keeps_its_objects() -> None:
    store_answer: dict[str, object] = {
        "library_sync": f"{STORE_API}/v1/library/sync",
        "blackstone_header": dict(NATIVE_OBJECT_RESOURCES["blackstone_header"]),
    }
    resources = build_resources(store_answer, base=BASE, public=PUBLIC, site=SITE, is_local=False)
    assert resources["library_sync"] == f"{BASE}/v1/library/sync"
    assert resources["reading_state"] == f"{BASE}/v1/library/{{Ids}}/state"
    assert resources["blackstone_header"] == {"key": "x-amz-request-payer", "value": "requester"}
    assert "oauth_host" not in resources


def test_resources_and_objects_encode_as_one_json_map() -> None:
    body = msgspec.json.encode({"Resources": {**_build(is_local=True), **NATIVE_OBJECT_RESOURCES}})
    decoded = msgspec.json.decode(body)["Resources"]
    assert decoded["free_books_page"]["EN"] == "https://www.kobo.com/{region}/{language}/p/free-ebooks"
    assert decoded["use_one_store"] == "True"


def test_oidc_document_endpoints_point_at_our_oauth_stub() -> None:
    document = oidc_configuration(BASE)
    assert document["issuer"] == f"{BASE}/oauth"
    assert document["token_endpoint"] == f"{BASE}/oauth/token"
    for key in ("authorization_endpoint", "userinfo_endpoint", "jwks_uri"):
        endpoint = document[key]
        assert isinstance(endpoint, str)
        assert endpoint.startswith(f"{BASE}/oauth/")
    assert document["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert document["response_types_supported"]
    assert document["token_endpoint_auth_methods_supported"]
    assert msgspec.json.decode(msgspec.json.encode(document)) == document
