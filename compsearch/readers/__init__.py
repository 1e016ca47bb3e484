"""Per-format readers: bytes of one file to text with ``\\n`` newlines, line numbers preserved.

- ``decode``: text files in any common encoding (BOMs, UTF-8, cp1252, detected legacy encodings),
  binary content refused;
- ``html``: the visible text of a page, each fragment on its source line, headings as Markdown;
- ``pdf``: the text of each page (pypdf), with the first line of each page recorded.

``compsearch.ingest.parse`` picks the reader by file kind; readers never raise on bad content, they
return a ``Skipped`` (or a reason). A new format that needs its own extraction gets a module here.
"""
