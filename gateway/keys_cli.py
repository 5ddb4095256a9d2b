"""`python -m gateway keys create|list|revoke`: manage the client key file (governor/client_keys.py).

`create` prints the new key once on stdout (nothing else there, so `KEY=$(python -m gateway keys create ...)` works)
and stores only its hash; the file is GOVERNOR_GATEWAY_KEYS_FILE or `--keys-file`.
"""

from __future__ import annotations

import argparse
import os
import sys

from governor.client_keys import KeyFileError, add_key, load_keys, remove_key


def keys_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway keys", description="Manage the gateway's client keys")
    parser.add_argument(
        "--keys-file",
        default=os.environ.get("GOVERNOR_GATEWAY_KEYS_FILE"),
        help="the key file (default: $GOVERNOR_GATEWAY_KEYS_FILE)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="make a key, print it once, store its hash")
    create.add_argument("--name", required=True, help="who holds the key (unique in the file)")
    create.add_argument("--services", required=True, help="comma-separated services it may call, or '*'")
    create.add_argument("--rate-limit", type=float, default=None, help="requests per second (token bucket)")
    create.add_argument("--burst", type=int, default=None, help="the bucket's size (default: the rate)")
    create.add_argument("--max-concurrent", type=int, default=None, help="requests in flight at once")
    sub.add_parser("list", help="the keys' names, services and limits (never a key)")
    revoke = sub.add_parser("revoke", help="remove a key by name")
    revoke.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    if not args.keys_file:
        parser.error("no key file: pass --keys-file or set GOVERNOR_GATEWAY_KEYS_FILE")
    try:
        if args.command == "create":
            services = [s.strip() for s in args.services.split(",") if s.strip()]
            key = add_key(args.keys_file, args.name, services, args.rate_limit, args.burst, args.max_concurrent)
            print(key)
            print(
                f"key {args.name!r} stored (as its sha256) in {args.keys_file}; this is the only time it is shown",
                file=sys.stderr,
            )
        elif args.command == "list":
            for k in load_keys(args.keys_file).keys:
                limits = []
                if k.rate_limit_rps is not None:
                    limits.append(f"{k.rate_limit_rps:g} req/s (burst {k.burst or 'auto'})")
                if k.max_concurrent is not None:
                    limits.append(f"{k.max_concurrent} concurrent")
                print(f"{k.name}\tservices={','.join(k.services)}\t{'; '.join(limits) or 'no limits'}\t{k.created_at}")
        else:
            remove_key(args.keys_file, args.name)
            print(f"key {args.name!r} revoked", file=sys.stderr)
    except KeyFileError as err:
        print(err, file=sys.stderr)
        return 2
    return 0
