"""The cog's one ``Translator``: every string a member or the owner reads goes through ``_``.

Red looks for a translator's files in ``locales/`` beside the file it was made with,
and translates command help with the cog class's translator (``cog_i18n``). One
translator made here therefore serves every module of the cog from one place,
``chunkrecorder/locales/<locale>.po``, and translators work on one template,
``chunkrecorder/locales/messages.pot``: replies and command help together.

The template is extracted by Red's own tool; from the repository root::

    redgettext --command-docstrings --verbose --recursive --relative-to-cwd \\
        --output-dir chunkrecorder/locales chunkrecorder

(``--relative-to-cwd --output-dir`` gather every folder's strings into that one file;
``tests/cog/test_i18n.py`` fails while the committed template is out of date.)

Rules for the strings, as in Red's own cogs: ``_()`` around a literal only, called when
the message is made (never at import, so each guild's locale applies), placeholders named
for what they hold, ``.format()`` after ``_()``, and one literal per whole sentence.
"""

from __future__ import annotations

from redbot.core.i18n import Translator

__all__ = ["_"]

_ = Translator("ChunkRecorder", __file__)
