"""Settings come from the environment once, and a bad value names its variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opds_server.config import SettingsError, settings_from_env, settings_table


def test_values_are_decoded_from_strings(tmp_path: Path) -> None:
    settings = settings_from_env(
        {"OPDS_LIBRARY": str(tmp_path), "OPDS_PAGE_SIZE": "20", "OPDS_BASE_URL": "https://books.example.org/calibre/"}
    )
    assert settings.library == tmp_path
    assert settings.page_size == 20
    assert settings.base_url == "https://books.example.org/calibre"


def test_command_line_overrides_the_environment(tmp_path: Path) -> None:
    settings = settings_from_env({"OPDS_LIBRARY": "/elsewhere"}, {"library": str(tmp_path)})
    assert settings.library == tmp_path


@pytest.mark.parametrize(
    ("name", "value"), [("OPDS_PAGE_SIZE", "0"), ("OPDS_PAGE_SIZE", "many"), ("OPDS_THUMBNAIL_WIDTH", "5")]
)
def test_bad_values_name_the_variable_and_the_value(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{name}='{value}'"):
        settings_from_env({name: value})


def test_an_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / "opds.env"
    env_file.write_text("# comment\nOPDS_PAGE_SIZE=30\nexport OPDS_LIBRARY_NAME='Home Books'\n", encoding="utf-8")
    settings = settings_from_env({"OPDS_ENV_FILE": str(env_file), "OPDS_PAGE_SIZE": "40"})
    assert settings.page_size == 40
    assert settings.library_name == "Home Books"


def test_data_dir_defaults_to_the_users_data_folder(tmp_path: Path) -> None:
    settings = settings_from_env({"OPDS_ENV_FILE": str(tmp_path / "none")})
    assert settings.data_dir.name == "opds-server"


def test_readme_settings_table_is_generated_from_the_settings() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    begin = readme.index("<!-- settings-table")
    table = readme[readme.index("\n", begin) + 1 : readme.index("<!-- end settings-table -->")]
    assert table == settings_table()


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"GOOGLE_DRIVE_FOLDER_ID": "abc"}, "GOOGLE_DRIVE_FOLDER_ID is set but GOOGLE_DRIVE_CREDENTIALS is not"),
        ({"GOOGLE_DRIVE_CREDENTIALS": "/nowhere.json"}, "GOOGLE_DRIVE_CREDENTIALS is set but GOOGLE_DRIVE_FOLDER_ID"),
        (
            {"GOOGLE_DRIVE_CREDENTIALS": "/nowhere.json", "GOOGLE_DRIVE_FOLDER_ID": "abc"},
            "GOOGLE_DRIVE_CREDENTIALS='/nowhere.json' is not accepted: no such file",
        ),
        ({"S3_ENDPOINT_URL": "localhost:9000"}, "S3_ENDPOINT_URL='localhost:9000' is not accepted"),
        ({"AWS_ACCESS_KEY_ID": "AKIA"}, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together"),
        ({"GOOGLE_DRIVE_POLL_SECONDS": "0"}, "GOOGLE_DRIVE_POLL_SECONDS='0'"),
    ],
)
def test_cloud_settings_that_cannot_work_stop_start_up(environment: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        settings_from_env({"OPDS_ENV_FILE": "/nonexistent", **environment})
