import base64

import pytest

from kollm import dataurl


def test_a_data_url_decodes_and_text_is_not_one():
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
    url = "data:image/PNG;base64," + base64.b64encode(png).decode()
    d = dataurl.parse(url[:30] + "\n" + url[30:])  # line breaks some encoders add
    assert d is not None and d.mime == "image/png" and d.decode(1000) == png
    assert dataurl.parse("아이폰 케이스") is None and dataurl.parse("http://x/a.png") is None
    assert dataurl.parse("data:;base64,QQ==").mime == ""


@pytest.mark.parametrize("url,limit,reason", [
    ("data:image/png,abc", 100, "not_base64"),
    ("data:image/png;base64,@@@@", 100, "bad_base64"),
    ("data:image/png;base64,", 100, "empty"),
    ("data:image/png;base64," + "A" * 400, 100, "too_large"),  # refused before decoding
    ("data:image/png;base64," + base64.b64encode(b"x" * 101).decode(), 100, "too_large"),
])
def test_bad_data_urls_name_their_reason(url, limit, reason):
    with pytest.raises(dataurl.DataURLError) as e:
        d = dataurl.parse(url)
        d.decode(limit)
    assert e.value.reason == reason
