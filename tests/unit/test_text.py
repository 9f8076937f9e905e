import pytest

from shoploop.data.text import clean_text


@pytest.mark.parametrize("raw, clean", [
    ("<b>Features</b><br> ●Built-in carplay", "Features ●Built-in carplay"),
    ("Paper, 8.5&rdquo; x 11&rdquo;, 24 lb", "Paper, 8.5” x 11”, 24 lb"),
    ("Ink <!-- .headerM {color:#000000;font-size:24px;} --> cartridge", "Ink cartridge"),
    ("<style>.a{color:red}</style>Pens", "Pens"),
    (".a-box-inner{background-color:#fff}#aloha{margin:0} Tape roll", "Tape roll"),
    ("ＦＵＬＬ\u00a0width\u200b and   tabs\t\n", "FULL width and tabs"),
    ("3 < 5 and 5 > 3", "3 < 5 and 5 > 3"),
])
def test_markup_css_and_odd_unicode_are_cleaned(raw, clean):
    assert clean_text(raw) == clean


def test_none_stays_none_and_plain_text_is_untouched():
    assert clean_text(None) is None
    assert clean_text("Red cast iron frying pan, 24cm") == "Red cast iron frying pan, 24cm"


@pytest.mark.parametrize("query, bound", [
    ("sleeping bag under 102", 102.0), ("red pan below $25", 25.0), ("mug up to 12.50", 12.5),
    ("Kestrel UNDER 12", 12.0), ("red frying pan", None), ("size 10 boots", None),
])
def test_price_bound_is_read_from_the_query(query, bound):
    from shoploop.data.text import price_bound

    assert price_bound(query) == bound


def test_within_budget_feature_marks_items_over_the_bound():
    import numpy as np

    from shoploop.models.ranker import ITEM_FEATURES, MATCH_FEATURES
    from shoploop.serving.predict import ranking_features

    feats = np.zeros((2, len(ITEM_FEATURES)))
    feats[:, ITEM_FEATURES.index("log_price")] = np.log([10.0, 30.0])
    fill, zeros = np.zeros(len(ITEM_FEATURES)), np.zeros(2)
    within = len(ITEM_FEATURES) + MATCH_FEATURES.index("within_budget")
    assert ranking_features(feats, fill, zeros, zeros, 20.0)[:, within].tolist() == [1.0, -1.0]
    assert ranking_features(feats, fill, zeros, zeros, None)[:, within].tolist() == [0.0, 0.0]


def test_query_coverage_is_the_share_of_query_words_an_item_holds():
    import numpy as np

    from shoploop.models.retrieval import LexicalIndex

    index = LexicalIndex.build(["simpson angle bracket 12 gauge", "angle grinder", "deck paint"])
    assert index.coverage("angle bracket").tolist() == [1.0, 0.5, 0.0]
    assert index.coverage("the").tolist() == [0.0, 0.0, 0.0]  # a stopword alone: no words to cover
    assert index.coverage("angle zzzz").tolist() == [0.5, 0.5, 0.0]  # a word no item holds still counts
    # the request path asks for its candidates only, in their order
    assert index.coverage("angle bracket", np.array([2, 0, 0])).tolist() == [0.0, 1.0, 1.0]
