import pytest

from shoploop.warehouse.privacy import pseudonymise, scrub


def test_pseudonym_is_stable_keyed_and_not_the_id():
    a = pseudonymise("u000042", "key-one-0123456789")
    assert a == pseudonymise("u000042", "key-one-0123456789")
    assert a != pseudonymise("u000042", "key-two-0123456789")
    assert "u000042" not in a and len(a) == 32
    assert pseudonymise(None, "k" * 20) is None


@pytest.mark.parametrize("query, expected", [
    ("gift for anna.b+shop@example.co.uk", "gift for <email>"),
    ("call me +49 170 1234567 about tents", "call me <phone> about tents"),
    ("card 4111 1111 1111 1111 refund", "card <card> refund"),
    ("4111-1111-1111-1111", "<card>"),
])
def test_scrub_removes_personal_data(query, expected):
    assert scrub(query) == expected


@pytest.mark.parametrize("query", ["frying pan 24cm", "water bottle 750ml under 20", "running shoes uk 10",
                                   "tent 2 person", "gel pen 0.5mm", "notebook a5 2026"])
def test_scrub_leaves_shopping_words_alone(query):
    assert scrub(query) == query
