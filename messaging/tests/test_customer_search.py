"""Customer search by name and by typed phone number, in the API and pages."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.tests.factories import subscriber_create
from messaging import selectors

from .helpers import customer_make

CUSTOMERS = "/api/customers/"
GB_MOBILE = "+447911200123"


@pytest.fixture
def kunden(alice):
    """Sixty customers named "Kunde 0" to "Kunde 59", and one named "c0".

    Every number contains the digits 0 and 1, so a search that matched any
    digit of the query against numbers would return them all.
    """
    for index in range(60):
        customer_make(alice, phone=f"+551190010{index:04d}", name=f"Kunde {index}")
    return customer_make(alice, phone="+5511900109999", name="c0")


@pytest.fixture
def gb_customer(db):
    owner = subscriber_create("gwen@example.com", default_country="GB")
    customer = customer_make(owner, phone=GB_MOBILE, name="Gwen's customer")
    customer_make(owner, phone="+447700900456", name="Someone else")
    return customer


def _names(api, search):
    response = api.get(CUSTOMERS, {"search": search})
    assert response.status_code == 200, response.content
    return sorted(item["name"] for item in response.json()["results"])


def _search(owner, term):
    return list(selectors.customer_list(user=owner, search=term))


def test_search_with_letters_matches_names(api, kunden):
    assert _names(api, "c0") == ["c0"]


def test_search_name_with_digit_matches_names(api, kunden):
    response = api.get(CUSTOMERS, {"search": "Kunde 1"})

    assert response.json()["count"] == 11


def test_search_digits_matches_numbers(api, kunden):
    assert _names(api, "9999") == ["c0"]


def test_search_punctuated_number_matches(api, kunden):
    assert _names(api, "(11) 90010-9999") == ["c0"]


def test_dashboard_search_matches_names(alice_client, kunden):
    response = alice_client.get(reverse("messaging:customer_list"), {"q": "c0"})

    assert [customer.name for customer in response.context["customers"]] == ["c0"]


@pytest.mark.parametrize("term", ["07911200", "07911 200 123", "07911-200"])
def test_search_in_national_format_finds_number(gb_customer, term):
    assert _search(gb_customer.owner, term) == [gb_customer]


@pytest.mark.parametrize("term", ["0044 7911 200", "00447911200123"])
def test_search_with_international_prefix_finds_number(gb_customer, term):
    assert _search(gb_customer.owner, term) == [gb_customer]


@pytest.mark.parametrize("term", [GB_MOBILE, "+44 7911 200123", "7911200"])
def test_search_in_international_format_finds_number(gb_customer, term):
    assert _search(gb_customer.owner, term) == [gb_customer]


def test_search_lone_zero_matches_zeros(gb_customer):
    assert len(_search(gb_customer.owner, "0")) == 2
