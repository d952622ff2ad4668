"""/api/docs/ serves Swagger UI from this project's static files, not a CDN."""

import re

from django.contrib.staticfiles import finders

ASSET_ATTRIBUTE = re.compile(r"""\b(?:src|href)=["']([^"']+)["']""")


def docs_assets(client) -> list[str]:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    return ASSET_ATTRIBUTE.findall(response.content.decode())


def test_api_docs_loads_swagger_ui_from_static_files(client):
    assets = docs_assets(client)

    assert any(asset.endswith("/swagger-ui-bundle.js") for asset in assets), assets
    assert all(asset.startswith("/static/") for asset in assets), assets


def test_api_docs_assets_exist_in_static_files(client):
    for asset in docs_assets(client):
        assert finders.find(asset.removeprefix("/static/")), asset


def test_api_docs_names_no_other_host(client):
    page = client.get("/api/docs/").content.decode()

    assert not re.search(r"""["'(](?:https?:)?//""", page)
