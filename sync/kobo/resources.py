"""The Kobo store's ``/v1/initialization`` resource map, and the copy of it we serve (spec 5.2).

``NATIVE_RESOURCES`` is the ``Resources`` object that ``https://storeapi.kobo.com/v1/initialization``
returns, as captured publicly: the values are the store's own strings, byte for byte. It is the union
of the keys of four public copies, compared key by key:

* a device capture of the store's answer (a Kobo eReader behind a Komga proxy, an Italian account
  created in 2025), whose values win wherever copies disagree, being the newest dated answer;
* Komga's ``KoboProxy.nativeKoboResources`` at 65981e6 (as carried by a TypeScript port of
  ``gotson/komga:komga/src/main/kotlin/org/gotson/komga/infrastructure/kobo/KoboProxy.kt``), for the
  eight keys that capture lacks (``audiobook_get_credits``, ``fte_feedback``, ``optimus_enabled``...);
* the older map in ``gotson/komga`` itself and a Calibre-Web-Automated ``cps/kobo.py``
  ``NATIVE_KOBO_RESOURCES``, which add no keys, only older spellings (``http://kobo.com/`` return URLs).

Four values are not the capture's: it was taken behind Komga, so the three image keys are the store's
as Komga and the proxy-side half of the same capture record them, and ``customer_care_live_chat`` had
its key redacted, so it is Komga's and Calibre-Web's. Keys found only in janeczku/calibre-web's older
copy (``overdrive_*``, ``library_stack``, ``stacks_host_productId``) are left out: the store no longer
sends them. Feature flags (``kobo_superpoints_enabled``...) vary with the account's storefront.

The whole map is kept, not just the keys we rewrite, because recent firmware writes an empty value for
every key missing from the answer (Instapaper's keys, for one: spec 5.2,
crocodilestick/Calibre-Web-Automated#595), leaving those features with no URL to call.

The store also sends two keys whose values are JSON objects, not strings: they are kept apart in
``NATIVE_OBJECT_RESOURCES`` so that ``NATIVE_RESOURCES`` stays a ``str`` to ``str`` map; a caller that
wants the store's exact key set merges them into the answer.

Pure data and pure functions: this module imports only the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar

STORE_API = "https://storeapi.kobo.com"
"""The store's API origin; every value starting with it is pointed at our Kobo base instead."""

NATIVE_RESOURCES: Mapping[str, str] = MappingProxyType(
    {
        "account_page": "https://www.kobo.com/account/settings",
        "account_page_rakuten": "https://my.rakuten.co.jp/",
        "add_device": "https://storeapi.kobo.com/v1/user/add-device",
        "add_entitlement": "https://storeapi.kobo.com/v1/library/{RevisionIds}",
        "affiliaterequest": "https://storeapi.kobo.com/v1/affiliate",
        "assets": "https://storeapi.kobo.com/v1/assets",
        "audiobook": "https://storeapi.kobo.com/v1/products/audiobooks/{ProductId}",
        "audiobook_detail_page": "https://www.kobo.com/{region}/{language}/audiobook/{slug}",
        "audiobook_get_credits": "https://www.kobo.com/{region}/{language}/audiobooks/plans",
        "audiobook_landing_page": "https://www.kobo.com/{region}/{language}/audiobooks",
        "audiobook_preview": "https://storeapi.kobo.com/v1/products/audiobooks/{Id}/preview",
        "audiobook_purchase_withcredit": "https://storeapi.kobo.com/v1/store/audiobook/{Id}",
        "audiobook_subscription_management": "https://www.kobo.com/{region}/{language}/account/subscriptions",
        "audiobook_subscription_orange_deal_inclusion_url": "https://authorize.kobo.com/inclusion",
        "audiobook_subscription_purchase": "https://www.kobo.com/{region}/{language}/checkoutoption/21C6D938-934B-4A91-B979-E14D70B2F280",
        "audiobook_subscription_tiers": "https://www.kobo.com/{region}/{language}/checkoutoption/21C6D938-934B-4A91-B979-E14D70B2F280",
        "authorproduct_recommendations": "https://storeapi.kobo.com/v1/products/books/authors/recommendations",
        "autocomplete": "https://storeapi.kobo.com/v1/products/autocomplete",
        "bam": "https://storeapi.kobo.com/v2/activity/bam/success",
        "book": "https://storeapi.kobo.com/v1/products/books/{ProductId}",
        "book_detail_page": "https://www.kobo.com/{region}/{language}/ebook/{slug}",
        "book_detail_page_rakuten": "http://books.rakuten.co.jp/rk/{crossrevisionid}",
        "book_landing_page": "https://www.kobo.com/ebooks",
        "book_subscription": "https://storeapi.kobo.com/v1/products/books/subscriptions",
        "browse_history": "https://storeapi.kobo.com/v1/user/browsehistory",
        "categories": "https://storeapi.kobo.com/v1/categories",
        "categories_page": "https://www.kobo.com/ebooks/categories",
        "categoriesv2": "https://storeapi.kobo.com/api/v2/Categories/Top",
        "category": "https://storeapi.kobo.com/v1/categories/{CategoryId}",
        "category_featured_lists": "https://storeapi.kobo.com/v1/categories/{CategoryId}/featured",
        "category_products": "https://storeapi.kobo.com/v1/categories/{CategoryId}/products",
        "checkout_borrowed_book": "https://storeapi.kobo.com/v1/library/borrow",
        "client_authd_referral": "https://authorize.kobo.com/api/AuthenticatedReferral/client/v1/getLink",
        "configuration_data": "https://storeapi.kobo.com/v1/configuration",
        "content_access_book": "https://storeapi.kobo.com/v1/products/books/{ProductId}/access",
        "contributorsv2": "https://storeapi.kobo.com/v2/contributors/author",
        "createpurchaseifallowed_url": "https://www.kobo.com/checkout/createpurchaseifallowed",
        "customer_care_live_chat": "https://v2.zopim.com/widget/livechat.html?key=Y6gwUmnu4OATxN3Tli4Av9bYN319BTdO",
        "daily_deal": "https://storeapi.kobo.com/v1/products/dailydeal",
        "deals": "https://storeapi.kobo.com/v1/deals",
        "delete_entitlement": "https://storeapi.kobo.com/v1/library/{Ids}",
        "delete_tag": "https://storeapi.kobo.com/v1/library/tags/{TagId}",
        "delete_tag_items": "https://storeapi.kobo.com/v1/library/tags/{TagId}/items/delete",
        "delete_user_linked_accounts": "https://storeapi.kobo.com/v1/user/linkedaccounts/{Id}",
        "device_auth": "https://storeapi.kobo.com/v1/auth/device",
        "device_refresh": "https://storeapi.kobo.com/v1/auth/refresh",
        "dictionary_host": "https://ereaderfiles.kobo.com",
        "discovery_host": "https://discovery.kobobooks.com",
        "display_accessibility_enabled": "True",
        "display_parental_controls_enabled": "True",
        "dropbox_link_account_poll": "https://authorize.kobo.com/{region}/{language}/LinkDropbox",
        "dropbox_link_account_start": "https://authorize.kobo.com/LinkDropbox/start",
        "elabel_url": "https://ereaderfiles.kobo.com/elabels/",
        "ereaderdevices": "https://storeapi.kobo.com/v2/products/EReaderDeviceFeeds",
        "eula_page": "https://www.kobo.com/termsofuse?style=onestore",
        "exchange_auth": "https://storeapi.kobo.com/v1/auth/exchange",
        "external_book": "https://storeapi.kobo.com/v1/products/books/external/{Ids}",
        "facebook_sso_page": "https://authorize.kobo.com/signin/provider/Facebook/login?returnUrl=https://kobo.com/",
        "featured_list": "https://storeapi.kobo.com/v1/products/featured/{FeaturedListId}",
        "featured_lists": "https://storeapi.kobo.com/v1/products/featured",
        "featuredlist2": "https://storeapi.kobo.com/v2/products/list/featured",
        "fixed_layout_page_cache_enabled": "True",
        "fte_feedback": "https://storeapi.kobo.com/v1/products/ftefeedback",
        "funnel_metrics": "https://storeapi.kobo.com/v1/funnelmetrics",
        "geography_data": "https://storeapi.kobo.com/v2/configuration/geography/country",
        "get_download_keys": "https://storeapi.kobo.com/v1/library/downloadkeys",
        "get_download_link": "https://storeapi.kobo.com/v1/library/downloadlink",
        "get_tests_request": "https://storeapi.kobo.com/v1/analytics/gettests",
        "giftcard_epd_redeem_url": "https://www.kobo.com/{storefront}/{language}/redeem-ereader",
        "giftcard_redeem_url": "https://www.kobo.com/{storefront}/{language}/redeem",
        "googledrive_link_account_start": "https://authorize.kobo.com/{region}/{language}/linkcloudstorage/provider/google_drive",
        "gpb_flow_enabled": "False",
        "help_page": "https://www.kobo.com/help",
        "image_host": "//cdn.kobo.com/book-images/",
        "image_url_quality_template": "https://cdn.kobo.com/book-images/{ImageId}/{Width}/{Height}/{Quality}/{IsGreyscale}/image.jpg",
        "image_url_template": "https://cdn.kobo.com/book-images/{ImageId}/{Width}/{Height}/false/image.jpg",
        "instapaper_enabled": "True",
        "instapaper_env_url": "https://www.instapaper.com/api/kobo",
        "instapaper_link_account_start": "https://authorize.kobo.com/{region}/{language}/linkinstapaper",
        "kobo_audiobooks_credit_redemption": "False",
        "kobo_audiobooks_enabled": "True",
        "kobo_audiobooks_orange_deal_enabled": "False",
        "kobo_audiobooks_subscriptions_enabled": "False",
        "kobo_display_price": "True",
        "kobo_dropbox_link_account_enabled": "True",
        "kobo_google_tax": "False",
        "kobo_googledrive_link_account_enabled": "True",
        "kobo_nativeborrow_enabled": "False",
        "kobo_onedrive_link_account_enabled": "False",
        "kobo_onestorelibrary_enabled": "False",
        "kobo_privacyCentre_url": "https://www.kobo.com/privacy",
        "kobo_redeem_enabled": "True",
        "kobo_shelfie_enabled": "False",
        "kobo_shopping_cart_enabled": "False",
        "kobo_subscriptions_enabled": "True",
        "kobo_superpoints_enabled": "True",
        "kobo_wishlist_enabled": "True",
        "library_book": "https://storeapi.kobo.com/v1/user/library/books/{LibraryItemId}",
        "library_items": "https://storeapi.kobo.com/v1/user/library",
        "library_metadata": "https://storeapi.kobo.com/v1/library/{Ids}/metadata",
        "library_prices": "https://storeapi.kobo.com/v1/user/library/previews/prices",
        "library_search": "https://storeapi.kobo.com/v1/library/search",
        "library_sync": "https://storeapi.kobo.com/v1/library/sync",
        "love_dashboard_page": "https://www.kobo.com/{region}/{language}/kobosuperpoints",
        "love_points_redemption_page": "https://www.kobo.com/{region}/{language}/KoboSuperPointsRedemption?productId={ProductId}",
        "magazine_landing_page": "https://www.kobo.com/emagazines",
        "more_sign_in_options": "https://authorize.kobo.com/signin?returnUrl=https://kobo.com/#allProviders",
        "morebyauthor": "https://storeapi.kobo.com/v2/products/recommendations/morebyauthor",
        "notebooks": "https://storeapi.kobo.com/api/internal/notebooks",
        "notifications_registration_issue": "https://storeapi.kobo.com/v1/notifications/registration",
        "oauth_host": "https://oauth.kobo.com",
        "optimus_enabled": "False",
        "password_retrieval_page": "https://www.kobo.com/passwordretrieval.html",
        "patch_user_linked_accounts": "https://storeapi.kobo.com/v1/user/linkedaccounts/{Id}",
        "personalizedrecommendations": "https://storeapi.kobo.com/v2/users/personalizedrecommendations",
        "pocket_link_account_start": "https://authorize.kobo.com/{region}/{language}/linkpocket",
        "post_analytics_event": "https://storeapi.kobo.com/v1/analytics/event",
        "ppx_purchasing_url": "https://purchasing.kobo.com",
        "privacy_page": "https://www.kobo.com/privacypolicy?style=onestore",
        "product_nextread": "https://storeapi.kobo.com/v1/products/{ProductIds}/nextread",
        "product_prices": "https://storeapi.kobo.com/v1/products/{ProductIds}/prices",
        "product_recommendations": "https://storeapi.kobo.com/v1/products/{ProductId}/recommendations",
        "product_reviews": "https://storeapi.kobo.com/v1/products/{ProductIds}/reviews",
        "productbyid": "https://storeapi.kobo.com/v2/products/itemDetailById/{ProductType}/{Id}",
        "productbyslug": "https://storeapi.kobo.com/v2/products/itemDetail/{ProductType}/{Slug}",
        "products": "https://storeapi.kobo.com/v1/products",
        "productstatebyid": "https://storeapi.kobo.com/v2/products/itemStateById/{ProductType}/{Id}",
        "productstatebyslug": "https://storeapi.kobo.com/v2/products/itemState/{ProductType}/{Slug}",
        "productsv2": "https://storeapi.kobo.com/v2/products",
        "provider_external_sign_in_page": "https://authorize.kobo.com/ExternalSignIn/{providerName}?returnUrl=https://kobo.com/",
        "purchase_buy": "https://www.kobo.com/checkoutoption/",
        "purchase_buy_templated": "https://www.kobo.com/{region}/{language}/checkoutoption/{ProductId}",
        "quickbuy_checkout": "https://storeapi.kobo.com/v1/store/quickbuy/{PurchaseId}/checkout",
        "quickbuy_create": "https://storeapi.kobo.com/v1/store/quickbuy/purchase",
        "rakuten_token_exchange": "https://storeapi.kobo.com/v1/auth/rakuten_token_exchange",
        "rating": "https://storeapi.kobo.com/v1/products/{ProductId}/rating/{Rating}",
        "reading_services_host": "https://readingservices.kobo.com",
        "reading_state": "https://storeapi.kobo.com/v1/library/{Ids}/state",
        "recommendations": "https://storeapi.kobo.com/v1/products/bulk",
        "redeem_interstitial_page": "https://www.kobo.com",
        "redeem_loyalty_points": "https://storeapi.kobo.com/v1/user/loyalty/redeem",
        "reflowable_page_cache_enabled": "True",
        "registration_page": "https://authorize.kobo.com/signup?returnUrl=https://kobo.com/",
        "related": "https://storeapi.kobo.com/v2/products/recommendations/related",
        "related_items": "https://storeapi.kobo.com/v1/products/{Id}/related",
        "remaining_book_series": "https://storeapi.kobo.com/v1/products/books/series/{SeriesId}",
        "rename_tag": "https://storeapi.kobo.com/v1/library/tags/{TagId}",
        "review": "https://storeapi.kobo.com/v1/products/reviews/{ReviewId}",
        "review_sentiment": "https://storeapi.kobo.com/v1/products/reviews/{ReviewId}/sentiment/{Sentiment}",
        "sepa_banks": "https://storeapi.kobo.com/v2/purchasing/sepa/banks",
        "shelfie_recommendations": "https://storeapi.kobo.com/v1/user/recommendations/shelfie",
        "sign_in_page": "https://auth.kobobooks.com/ActivateOnWeb",
        "social_authorization_host": "https://social.kobobooks.com:8443",
        "social_host": "https://social.kobobooks.com",
        "store_home": "www.kobo.com/{region}/{language}",
        "store_host": "www.kobo.com",
        "store_newreleases": "https://www.kobo.com/{region}/{language}/List/new-releases/961XUjtsU0qxkFItWOutGA",
        "store_search": "https://www.kobo.com/{region}/{language}/Search?Query={query}",
        "store_top50": "https://www.kobo.com/{region}/{language}/ebooks/Top",
        "subs_landing_page": "https://www.kobo.com/{region}/{language}/plus",
        "subs_management_page": "https://www.kobo.com/{region}/{language}/account/subscriptions",
        "subs_plans_page": "https://www.kobo.com/{region}/{language}/plus/plans",
        "subs_purchase_buy_templated": "https://www.kobo.com/{region}/{language}/Checkoutoption/{ProductId}/{TierId}",
        "subscription_publisher_price_page": "https://www.kobo.com/{region}/{language}/subscriptionpublisherprice",
        "tag_items": "https://storeapi.kobo.com/v1/library/tags/{TagId}/Items",
        "tags": "https://storeapi.kobo.com/v1/library/tags",
        "taste_profile": "https://storeapi.kobo.com/v1/products/tasteprofile",
        "terms_of_sale_page": "https://authorize.kobo.com/{region}/{language}/terms/termsofsale",
        "text_to_speech_region_override": "False",
        "topproducts": "https://storeapi.kobo.com/v2/products/list/topproducts",
        "tracking": "https://storeapi.kobo.com/v2/tracking/searchperformed",
        "update_accessibility_to_preview": "https://storeapi.kobo.com/v1/library/{EntitlementIds}/preview",
        "use_one_store": "True",
        "user_currencyconversion": "https://storeapi.kobo.com/v1/user/currency/convert",
        "user_linked_accounts": "https://storeapi.kobo.com/v1/user/linkedaccounts",
        "user_loyalty_benefits": "https://storeapi.kobo.com/v1/user/loyalty/benefits",
        "user_loyalty_membership": "https://storeapi.kobo.com/v1/user/loyalty/membership",
        "user_platform": "https://storeapi.kobo.com/v1/user/platform",
        "user_profile": "https://storeapi.kobo.com/v1/user/profile",
        "user_ratings": "https://storeapi.kobo.com/v1/user/ratings",
        "user_recommendations": "https://storeapi.kobo.com/v1/user/recommendations",
        "user_reviews": "https://storeapi.kobo.com/v1/user/reviews",
        "user_subscription_koboplus": "https://storeapi.kobo.com/v1/user/subscription/kp/state",
        "user_tasteprofile_complete": "https://storeapi.kobo.com/v2/user/tasteprofile/complete",
        "user_tasteprofile_genre": "https://storeapi.kobo.com/v2/user/tasteprofile/genre",
        "user_wishlist": "https://storeapi.kobo.com/v1/user/wishlist",
        "userguide_host": "https://ereaderfiles.kobo.com",
        "wishlist_page": "https://www.kobo.com/{region}/{language}/account/wishlist",
        "workbooks": "https://storeapi.kobo.com/v2/products/workbooks",
    }
)
"""The store's string-valued resources, sorted by key (see the module docstring for the sources)."""

NATIVE_OBJECT_RESOURCES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "blackstone_header": {"key": "x-amz-request-payer", "value": "requester"},
        "free_books_page": {
            "EN": "https://www.kobo.com/{region}/{language}/p/free-ebooks",
            "FR": "https://www.kobo.com/{region}/{language}/p/livres-gratuits",
            "IT": "https://www.kobo.com/{region}/{language}/p/libri-gratuiti",
            "NL": "https://www.kobo.com/{region}/{language}/List/bekijk-het-overzicht-van-gratis-ebooks/QpkkVWnUw8sxmgjSlCbJRg",
            "PT": "https://www.kobo.com/{region}/{language}/p/livros-gratis",
        },
    }
)
"""The two resources the store sends as JSON objects; every copy compared has them with these values.

The inner maps are plain dicts, read-only by type only, so that msgspec can encode them as they are.
"""

V = TypeVar("V")


def build_resources(
    native: Mapping[str, V], *, base: str, public: str, site: str, is_local: bool
) -> dict[str, V | str]:
    """Point a resource map at our server (spec 5.2).

    Every string value that starts with ``https://storeapi.kobo.com`` gets ``base`` in place of that
    prefix, so whatever the device calls through the map reaches our catch-all. Then the keys the
    firmware must or should find pointing at us are set explicitly, which also adds any the input
    lacks (a store answer may). Values that are not strings (the store's JSON objects) pass through.

    Args:
        native: The map to rewrite: ``NATIVE_RESOURCES``, or the ``Resources`` of the store's own
            answer when proxying. It is not modified.
        base: Our Kobo base, ``<public base url>/kobo/<token>``, without a trailing slash.
        public: The public base URL, ``scheme://host[:port][/prefix]``; becomes ``image_host``.
        site: The public base URL's ``scheme://host[:port]`` only, without its path. The device keeps
            only this much of ``reading_services_host`` and calls ``/api/...`` at the site root.
        is_local: True when the store proxy is off: ``oauth_host`` and ``reading_services_host`` then
            point at us too, so that modern firmware's token refresh and reading-services calls get
            our stubs (spec 5.12) instead of the store's 401.

    Returns:
        A new map with the same keys as ``native`` plus any of the rewritten keys it lacked.
    """
    resources: dict[str, V | str] = {
        key: base + value[len(STORE_API) :] if isinstance(value, str) and value.startswith(STORE_API) else value
        for key, value in native.items()
    }
    resources.update(
        image_host=public,
        image_url_template=f"{base}/v1/books/{{ImageId}}/thumbnail/{{Width}}/{{Height}}/false/image.jpg",
        image_url_quality_template=(
            f"{base}/v1/books/{{ImageId}}/thumbnail/{{Width}}/{{Height}}/{{Quality}}/{{IsGreyscale}}/image.jpg"
        ),
        library_sync=f"{base}/v1/library/sync",
        library_metadata=f"{base}/v1/library/{{Ids}}/metadata",
        reading_state=f"{base}/v1/library/{{Ids}}/state",
        tags=f"{base}/v1/library/tags",
        tag_items=f"{base}/v1/library/tags/{{TagId}}/Items",
        delete_tag=f"{base}/v1/library/tags/{{TagId}}",
        rename_tag=f"{base}/v1/library/tags/{{TagId}}",
        delete_tag_items=f"{base}/v1/library/tags/{{TagId}}/items/delete",
        delete_entitlement=f"{base}/v1/library/{{Ids}}",
    )
    if is_local:
        resources.update(oauth_host=f"{base}/oauth", reading_services_host=site)
    return resources


def oidc_configuration(base: str) -> dict[str, object]:
    """The OpenID discovery document served at ``{base}/oauth/.well-known/openid-configuration``.

    Modern firmware fetches it before refreshing its access token once ``oauth_host`` points at us
    (spec 5.12); with no ``token_endpoint`` it asks an empty URL for a token, fails, and drops the
    whole sync queue. Every endpoint lies under ``{base}/oauth``, which our stub answers with a token
    for any request, so the document only has to be well formed: it carries the fields OpenID
    Connect Discovery 1.0 requires plus those the spec lists.

    Args:
        base: Our Kobo base, ``<public base url>/kobo/<token>``, without a trailing slash.

    Returns:
        The document as a JSON-ready dict.
    """
    issuer = f"{base}/oauth"
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "offline_access"],
    }
