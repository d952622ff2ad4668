"""Error pages render inside the product's layout."""

import pytest


@pytest.mark.django_db
def test_unknown_page_uses_styled_404(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert b"Page not found" in response.content
    assert b"Back to the dashboard" in response.content
