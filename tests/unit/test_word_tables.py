"""Word tables merged into a page family's (``i18n.add_words``) may add words, never change
one another's: a merge that silently replaced ``contact`` broke every page's footer."""

from __future__ import annotations

import pytest

from voting_service.web import i18n


def test_a_table_that_redefines_a_word_is_refused() -> None:
    words = {"zh": {"contact": "联系方式：{x}"}, "en": {"contact": "Contact: {x}"}}
    with pytest.raises(ValueError, match=r"probe redefines zh words \['contact'\]"):
        i18n.add_words(words, {"zh": {"contact": "主办方联系方式"}, "en": {}}, "probe")  # type: ignore[arg-type]
    assert words["zh"]["contact"] == "联系方式：{x}"


def test_new_words_and_the_same_word_twice_are_merged() -> None:
    words = {"zh": {"a": "甲"}, "en": {"a": "A"}}
    i18n.add_words(words, {"zh": {"a": "甲", "b": "乙"}, "en": {"b": "B"}}, "probe")  # type: ignore[arg-type]
    assert words == {"zh": {"a": "甲", "b": "乙"}, "en": {"a": "A", "b": "B"}}


def test_the_service_s_tables_do_not_clash() -> None:
    from voting_service.web.ops import words as ops_words  # merges the organisers' table at import

    assert i18n.MESSAGES["zh"]["contact"] == "联系方式：{x}"
    assert i18n.MESSAGES["zh"]["organiser_contact"] == "主办方联系方式"
    assert ops_words.MESSAGES["zh"]  # imported without a clash
