"""The Java side of the COCO toolkit: finding ``java``, the PTB tokenizer, SPICE's jars.

pycocoevalcap ships its jars inside the Python package; we run them with the same command lines
as the toolkit, so tokens (and so every score) are the toolkit's own. Differences from the stock
wrapper are only in plumbing: all sentences of a run (references and every results file) go to
one tokenizer process, and line breaks inside a caption are blanked first, because the stock
wrapper would silently shift every later caption onto the wrong image.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from ..errors import TomcapError

log = logging.getLogger(__name__)

JVM_QUICK = ("-XX:TieredStopAtLevel=1",)
"""JVM flags of our short Java runs: the C1 compiler only. C2's optimising compiles cost more CPU
than they save in runs of seconds (METEOR on 5000 images: ~10 CPU-s instead of ~21). Flags change
speed only: Java arithmetic is deterministic, so tokens and scores are the same."""
JAVA_FIX = "install a Java runtime: apt-get install -y default-jre-headless (or put `java` on PATH)"
PTB_JAR = "stanford-corenlp-3.4.1.jar"
PTB_CLASS = "edu.stanford.nlp.process.PTBTokenizer"
PTB_PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                              ".", "?", "!", ",", ":", "-", "--", "...", ";"])
"""Tokens the COCO toolkit drops after tokenising (pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS)."""

SPICE_CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\u2028\u2029\x0b\x0c"})
"""Characters the Java tokenizer treats as line ends; one caption must stay one line."""
_SENTINEL = "tomcapsentinel"


def java_executable() -> str:
    """Path of ``java``; raises with the install command when it is missing."""
    java = shutil.which("java")
    if java is None:
        raise TomcapError("`java` not found: the COCO tokenizer and METEOR are Java programs", fix=JAVA_FIX)
    return java


@cache
def package_dir(sub: str) -> Path:
    """Folder of a pycocoevalcap sub-package (where its jars live)."""
    import importlib

    mod = importlib.import_module(f"pycocoevalcap.{sub}")
    return Path(mod.__file__).resolve().parent if mod.__file__ else Path(next(iter(mod.__path__)))


def spice_available() -> bool:
    """SPICE needs the Stanford CoreNLP jars that pycocoevalcap downloads at first use."""
    lib = package_dir("spice") / "lib"
    return all((lib / jar).is_file() for jar in SPICE_CORENLP_JARS)


class TokenizerProcess:
    """One run of the PTB tokenizer over many sentences, started at once and collected later.

    Starting it early lets Python work (loading, METEOR start-up) overlap the JVM's start.
    """

    def __init__(self, sentences: Sequence[str]):
        self.n = len(sentences)
        jar = package_dir("tokenizer") / PTB_JAR
        self._tmp = tempfile.NamedTemporaryFile(prefix="tomcap-ptb-", suffix=".txt", delete=False)
        try:
            # Same bytes as the stock wrapper writes (captions joined by '\n', UTF-8), plus a sentinel
            # last line so that an empty last caption still yields its (empty) line.
            lines = [s.translate(_LINE_BREAKS) for s in sentences] + [_SENTINEL]
            self._tmp.write("\n".join(lines).encode())
            self._tmp.close()
            cmd = [java_executable(), *JVM_QUICK, "-cp", str(jar), PTB_CLASS, "-preserveLines", "-lowerCase",
                   self._tmp.name]
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except BaseException:
            os.unlink(self._tmp.name)
            raise

    def result(self) -> list[str]:
        """Tokenised sentences, punctuation dropped, in input order."""
        try:
            out, err = self._proc.communicate()
        finally:
            os.unlink(self._tmp.name)
        if self._proc.returncode != 0:
            raise TomcapError(f"the PTB tokenizer failed (exit {self._proc.returncode}): "
                              f"{err.decode(errors='replace').strip()[-500:]}",
                              fix="check the Java installation (java -version) and the pycocoevalcap install")
        lines = out.decode().split("\n")
        if len(lines) != self.n + 1 or lines[-1].strip() != _SENTINEL:
            raise TomcapError(f"the PTB tokenizer returned {len(lines)} lines for {self.n} captions",
                              fix="report this caption set as a bug; it contains a line break the tokenizer splits on")
        return [" ".join(w for w in line.rstrip().split(" ") if w not in PTB_PUNCTUATIONS) for line in lines[:-1]]


def ptb_tokenize(sentences: Sequence[str]) -> list[str]:
    """Tokenise like pycocoevalcap's PTBTokenizer (lower-cased, punctuation dropped), in one process."""
    return TokenizerProcess(sentences).result()
