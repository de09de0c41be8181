"""Comments' Markdown, rendered safely: CommonMark without raw HTML, then an allow-list sanitiser (nh3) as the
second wall, links rel=nofollow and only to http(s) and mailto."""

from __future__ import annotations

import re

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).disable("image")
TAGS = {"p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li", "a", "h3", "h4", "hr"}
ATTRIBUTES = {"a": {"href", "title"}}
SCHEMES = {"http", "https", "mailto"}
# A mention is "@" and a member's email address; the autocompletion inserts it whole.
MENTION = re.compile(r"(?<![\w.+-])@([\w.+-]+@[\w-]+(?:\.[\w-]+)+)")


def render(body: str) -> Markup:
    html = _md.render(body)
    return Markup(
        nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=SCHEMES, link_rel="nofollow noopener noreferrer")
    )


def mentioned_emails(body: str) -> set[str]:
    return {m.lower() for m in MENTION.findall(body)}
