"""mkdocs hook (mkdocs.yml ``hooks``): links in the README and deploy/README.md sections the site
includes (pymdownx.snippets) work on GitHub and on the site.

Those files link to the pages as ``docs/PAGE.md`` (README.md) and ``../docs/PAGE.md``
(deploy/README.md); on the site the same text stands in ``docs/PAGE.md`` itself, where the
link is ``PAGE.md``. A Markdown preprocessor that runs after the snippets are inserted (priority
below pymdownx.snippets' 32) and before mkdocs checks the links rewrites ``](docs/`` and
``](../docs/`` to ``](``. Pages of the site never link into a ``docs/`` folder of their own, so
nothing else matches.
"""
import re

from markdown import Extension
from markdown.preprocessors import Preprocessor

LINK = re.compile(r"\]\((?:\.\./)?docs/")


class _SiteLinks(Preprocessor):
    def run(self, lines):
        return [LINK.sub("](", line) for line in lines]


class SiteLinks(Extension):
    def extendMarkdown(self, md):
        md.preprocessors.register(_SiteLinks(md), "mindyolox_site_links", 20)


def on_config(config, **kwargs):
    config.markdown_extensions.append(SiteLinks())
    return config
