"""Manage the service's API tokens: ``python -m oxnet.serve.tokens add|revoke|list NAME --file FILE``.

``add`` writes ``NAME sha256:HEX`` to the token file (created with mode 600) and prints the new token
once: only its hash is kept. ``revoke`` removes the name's line (the running service notices the
change at its next request). The file is rewritten atomically.
"""

import argparse
import os
import sys
import tempfile

from .auth import hash_token, new_token


def _read(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def _write(path, lines):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tokens.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m oxnet.serve.tokens", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("add", "revoke", "list"))
    p.add_argument("name", nargs="?", help="the token's name (a person or a system), no spaces")
    p.add_argument("--file", required=True, help="the token file")
    args = p.parse_args(argv)
    lines = _read(args.file)
    names = [line.split()[0] for line in lines if not line.startswith("#")]
    if args.action == "list":
        print("\n".join(names) if names else f"{args.file}: no tokens")
        return 0
    if not args.name or any(c.isspace() for c in args.name):
        print("error: give a NAME without spaces", file=sys.stderr)
        return 2
    if args.action == "add":
        if args.name in names:
            print(
                f"error: {args.file} already has a token named {args.name!r} (revoke it first)",
                file=sys.stderr,
            )
            return 2
        token = new_token()
        _write(args.file, lines + [f"{args.name} {hash_token(token)}"])
        print(token)
        print(f"(token {args.name!r} added to {args.file}; it is shown only now)", file=sys.stderr)
        return 0
    if args.name not in names:
        print(f"error: {args.file} has no token named {args.name!r}", file=sys.stderr)
        return 2
    _write(args.file, [line for line in lines if line.split()[0] != args.name])
    print(f"token {args.name!r} revoked", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
