"""The Kobo sync wire format as Structs (spec sections 5 and 6), PascalCase on the wire.

Outgoing objects carry every field the reference servers send (the device's real minimum is
unknown). Incoming reading states keep numbers as the device typed them, ``int`` or ``float``,
because echoing ``48`` as ``48.0`` is one cause of the "Return to last page read?" popup (spec 8.2).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

DUMMY_ID = "00000000-0000-0000-0000-000000000001"
"""The category and genre id every reference server sends."""

Status = Literal["ReadyToRead", "Reading", "Finished"]
MAX_TEXT = 4096


class _Wire(msgspec.Struct, frozen=True, kw_only=True, rename="pascal", omit_defaults=True):
    """What the device sends (and we echo): every default is ``None``, left out when unset."""


class _Out(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    """What only we send: every field goes out (``False`` and ``0`` too) except ``UNSET`` ones."""


# Reading state (6.4), as the device sends it and as we send it back.

Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]


class Location(_Wire, frozen=True, kw_only=True):
    value: Text | None = None
    type: Text | None = None
    source: Text | None = None


class Bookmark(_Wire, frozen=True, kw_only=True):
    last_modified: Text | None = None
    progress_percent: int | float | None = None
    content_source_progress_percent: int | float | None = None
    location: Location | None = None


class Statistics(_Wire, frozen=True, kw_only=True):
    last_modified: Text | None = None
    spent_reading_minutes: int | None = None
    remaining_time_minutes: int | None = None


class StatusInfo(_Wire, frozen=True, kw_only=True):
    last_modified: Text | None = None
    status: Status | None = None
    times_started_reading: int | None = None
    last_time_started_reading: Text | None = None
    last_time_finished: Text | None = None


class ReadingState(_Wire, frozen=True, kw_only=True):
    entitlement_id: str
    created: str | None = None
    last_modified: str | None = None
    priority_timestamp: str | None = None
    status_info: StatusInfo | None = None
    statistics: Statistics | None = None
    current_bookmark: Bookmark | None = None


class ReadingStateUpdate(_Wire, frozen=True, kw_only=True):
    """One element of a PUT's ``ReadingStates``: any part may be missing or null (spec 5.6)."""

    entitlement_id: Text | None = None
    last_modified: Text | None = None
    current_bookmark: Bookmark | None = None
    statistics: Statistics | None = None
    status_info: StatusInfo | None = None


class ReadingStatesUpdate(_Wire, frozen=True, kw_only=True):
    reading_states: Annotated[list[ReadingStateUpdate], msgspec.Meta(min_length=1, max_length=100)]


class Result(_Out, frozen=True, kw_only=True):
    result: Literal["Success", "Ignored", "Failure"]


class UpdateResult(_Out, frozen=True, kw_only=True):
    entitlement_id: str
    current_bookmark_result: Result
    statistics_result: Result
    status_info_result: Result
    last_modified: str | UnsetType = UNSET
    priority_timestamp: str | UnsetType = UNSET


class UpdateResponse(_Out, frozen=True, kw_only=True):
    request_result: Literal["Success"] = "Success"
    update_results: list[UpdateResult]


# Entitlements and metadata (6.1-6.3).


class ActivePeriod(_Out, frozen=True, kw_only=True):
    from_: str = msgspec.field(name="From")


class BookEntitlement(_Out, frozen=True, kw_only=True):
    accessibility: Literal["Full", "Preview"] = "Full"
    active_period: ActivePeriod
    created: str
    cross_revision_id: str
    id: str
    is_hidden_from_archive: bool = False
    is_locked: bool = False
    is_removed: bool = False
    last_modified: str
    origin_category: str = "Imported"
    revision_id: str
    status: Literal["Active", "Deleted"] = "Active"


class DownloadUrl(_Out, frozen=True, kw_only=True):
    format: Literal["KEPUB", "EPUB3", "EPUB", "EPUB3FL"]
    size: int
    url: str
    platform: str = "Generic"
    drm_type: str = "None"


class ContributorRole(_Out, frozen=True, kw_only=True):
    name: str


class Publisher(_Out, frozen=True, kw_only=True):
    imprint: str = ""
    name: str


class Series(_Out, frozen=True, kw_only=True):
    name: str
    number: str
    number_float: float
    id: str


class Price(_Out, frozen=True, kw_only=True):
    currency_code: str | UnsetType = UNSET
    total_amount: int = 0


class BookMetadata(_Out, frozen=True, kw_only=True):
    entitlement_id: str
    revision_id: str
    cross_revision_id: str
    work_id: str
    title: str
    description: str
    cover_image_id: str | UnsetType = UNSET
    download_urls: list[DownloadUrl]
    contributors: list[str]
    contributor_roles: list[ContributorRole]
    language: str = "en"
    publication_date: str | UnsetType = UNSET
    publisher: Publisher | UnsetType = UNSET
    series: Series | UnsetType = UNSET
    isbn: str | UnsetType = UNSET
    categories: list[str] = msgspec.field(default_factory=lambda: [DUMMY_ID])
    genre: str = DUMMY_ID
    current_display_price: Price = msgspec.field(default_factory=lambda: Price(currency_code="USD"))
    current_love_display_price: Price = msgspec.field(default_factory=Price)
    external_ids: list[str] = msgspec.field(default_factory=list)
    is_eligible_for_kobo_love: bool = False
    is_internet_archive: bool = False
    is_pre_order: bool = False
    is_social_enabled: bool = True
    phonetic_pronunciations: dict[str, str] = msgspec.field(default_factory=dict)


# Collections (6.5).


class TagItem(_Out, frozen=True, kw_only=True):
    revision_id: Text
    type: Text = "ProductRevisionTagItem"


class Tag(_Out, frozen=True, kw_only=True):
    id: str
    name: str | UnsetType = UNSET
    type: str | UnsetType = UNSET
    created: str | UnsetType = UNSET
    last_modified: str
    items: list[TagItem] | UnsetType = UNSET


class TagCreate(_Wire, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
    items: Annotated[list[TagItem], msgspec.Meta(max_length=10_000)] = msgspec.field(default_factory=list)


class TagRename(_Wire, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]


class TagItems(_Wire, frozen=True, kw_only=True):
    items: Annotated[list[TagItem], msgspec.Meta(max_length=10_000)] = msgspec.field(default_factory=list)


# The change objects of a sync page (5.4): each element has exactly one key.


class Entitlement(_Out, frozen=True, kw_only=True):
    book_entitlement: BookEntitlement
    book_metadata: BookMetadata
    reading_state: ReadingState | UnsetType = UNSET


class ReadingStateChange(_Wire, frozen=True, kw_only=True):
    reading_state: ReadingState


class TagChange(_Wire, frozen=True, kw_only=True):
    tag: Tag


class SyncItem(_Wire, frozen=True, kw_only=True):
    new_entitlement: Entitlement | None = None
    changed_entitlement: Entitlement | None = None
    changed_product_metadata: Entitlement | None = None
    changed_reading_state: ReadingStateChange | None = None
    new_tag: TagChange | None = None
    changed_tag: TagChange | None = None
    deleted_tag: TagChange | None = None


# Device authentication (5.3).


class DeviceAuthRequest(_Wire, frozen=True, kw_only=True):
    user_key: Text | None = None


class DeviceAuth(_Out, frozen=True, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105  # the token kind, not a secret
    tracking_id: str
    user_key: str


ENCODER = msgspec.json.Encoder()
