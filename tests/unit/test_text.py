import pytest

from shoploop.text import clean_text


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
