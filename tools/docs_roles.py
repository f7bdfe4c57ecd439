"""A griffe extension for the API page (mkdocs.yml, mkdocstrings' python handler ``extensions``):
the Sphinx roles the docstrings use (``:class:`~mindyolox.options.DeviceOptions```, ``:func:``,
``:meth:``, ``:mod:``, ``:attr:``, ``:exc:``, ``:data:``, ``:obj:``) become inline code in the
Markdown the site renders: ``~a.b.C`` -> ``C`` (Sphinx's short form), ``a.b.C`` -> ``a.b.C``.
The sources keep their roles (they read well in ``help()``); only the site's copy changes.
"""
import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|data|obj):`(~?)([^`]+)`")


def plain(text):
    """``text`` with every Sphinx role replaced by Markdown inline code (see the module doc)."""
    return ROLE.sub(lambda m: "`" + (m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2)) + "`", text)


class SphinxRoles(griffe.Extension):
    """Rewrites each loaded object's docstring with ``plain`` before it is parsed."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
