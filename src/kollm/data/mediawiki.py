"""MediaWiki XML dumps (e.g. kowiki-latest-pages-articles.xml.bz2) -> article text.

The dump is streamed (a Korean Wikipedia dump is GBs); markup is removed with mwparserfromhell,
after dropping the parts whose text is not prose: references, files/images, categories, tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import IO
from xml.etree.ElementTree import ParseError, iterparse

import mwparserfromhell

# Link prefixes whose target is not running text, in English and Korean namespace names.
_DROP_LINKS = re.compile(r"^\s*:?\s*(file|image|파일|그림|category|분류|media|미디어)\s*:", re.I)
_DROP_TAGS = {"ref", "gallery", "math", "table", "references", "score", "timeline", "syntaxhighlight"}
_REDIRECT = re.compile(r"^\s*#\s*(redirect|넘겨주기)", re.I)


def strip_wiki_markup(wikitext: str) -> str:
    """Plain article text: templates, references, files and categories removed, links kept as text."""
    code = mwparserfromhell.parse(wikitext)
    for link in code.filter_wikilinks():
        if _DROP_LINKS.match(str(link.title)):
            try:
                code.remove(link)
            except ValueError:  # already gone with an enclosing node
                pass
    for tag in code.filter_tags():
        if str(tag.tag).lower() in _DROP_TAGS:
            try:
                code.remove(tag)
            except ValueError:
                pass
    text = code.strip_code(normalize=True, collapse=True)
    lines = [ln.strip() for ln in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]  # the dump's tags carry the export-schema namespace


def iter_wiki_pages(stream: IO[bytes], source: str, problem: Callable[[str, str], None]) -> Iterator[dict]:
    """Articles (namespace 0, not redirects) of a MediaWiki export as {id, source, text}."""
    title = ns = page_id = text = None
    redirect = False
    try:
        for _event, elem in iterparse(stream, events=("end",)):
            name = _local(elem.tag)
            if name == "title":
                title = elem.text or ""
            elif name == "ns":
                ns = (elem.text or "").strip()
            elif name == "id" and page_id is None:  # the first <id> in a page is the page's own
                page_id = (elem.text or "").strip()
            elif name == "redirect":
                redirect = True
            elif name == "text":
                text = elem.text or ""
            elif name == "page":
                if redirect or _REDIRECT.match(text or ""):
                    problem("wiki_redirect", "")
                elif ns != "0":
                    problem("wiki_not_article", "")
                else:
                    body = strip_wiki_markup(text or "")
                    if body:
                        yield {"id": f"wiki-{page_id}", "source": source, "text": f"{title}\n\n{body}"}
                    else:
                        problem("empty_document", f"{source}: page {title!r} has no text")
                title = ns = page_id = text = None
                redirect = False
                elem.clear()  # keep memory flat on multi-GB dumps
    except ParseError as e:
        problem("truncated_file", f"{source}: XML ends early or is broken ({e}); kept the pages before it")
