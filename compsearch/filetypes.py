"""Which files are which: kinds by extension, code languages, names that are code, extensions that
are never text, generated files that are noise. Data only; ``ingest.classify_path`` applies it.
"""

from __future__ import annotations


KIND_BY_EXTENSION: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdown": "markdown",
    ".mkd": "markdown",
    ".rst": "rst",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".pdf": "pdf",
}

# Source code and configuration files are all kind "code".  JSON is included
# (package.json, tsconfig.json, ... are useful); huge data dumps are kept out
# by ``max_file_bytes`` and lock files by ``GENERATED_NAMES``.
LANGUAGE_BY_EXTENSION: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".cs": "csharp",
    ".go": "go",
    ".rs": "rust",
    ".rb": "ruby",
    ".php": "php",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".sql": "sql",
    ".swift": "swift",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".scala": "scala",
    ".lua": "lua",
    ".r": "r",
    ".pl": "perl",
    ".pm": "perl",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".ini": "ini",
    ".cfg": "ini",
    ".json": "json",
    ".css": "css",
}

CODE_NAMES: dict[str, str] = {
    "makefile": "make",
    "gnumakefile": "make",
    "dockerfile": "dockerfile",
}

# Never text (or never useful as text): skipped by extension without reading.
SKIP_EXTENSIONS = frozenset(
    """.log .png .jpg .jpeg .gif .bmp .ico .tif .tiff .webp .svgz .psd .mp3 .mp4 .m4a .ogg .oga
    .wav .flac .avi .mov .mkv .webm .zip .tar .tgz .bz2 .xz .zst .7z .rar .jar .war .whl .deb
    .rpm .iso .img .dmg .so .o .a .dylib .dll .exe .bin .class .pyc .pyo .pyd .wasm .woff .woff2
    .ttf .otf .eot .sqlite .db .pkl .pickle .npy .npz .safetensors .pt .pth .onnx .gguf .parquet
    .mo .gmo .xls .xlsx .doc .docx .ppt .pptx .odt .ods""".split()
)

GENERATED_NAMES = frozenset(
    {"package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "composer.lock"}
)
GENERATED_SUFFIXES = (".min.js", ".min.css")

# Directories never worth walking, whatever include_hidden says.
