#!/usr/bin/env python3
"""A real SMTP submission server for the report crate's mail tests (aiosmtpd, pinned in
.ci/install-report-tools), behaving like an MSSanté operator's: TLS with a client certificate
REQUIRED (signed by the test CA), STARTTLS required before MAIL, or implicit TLS.

Each accepted message is saved in --out as NNNN.eml, with NNNN.peer holding the subject of the
client certificate seen in the TLS session and NNNN.envelope the envelope (sender, recipients).
Prints "PORT <n>" on stdout once it listens on 127.0.0.1 (--port, or one the system chooses).

Modes (--mode):
  ok         accept (a recipient whose address contains "refuse" gets 550)
  tempfail   answer 451 to MAIL FROM
  plain      no TLS offered at all (the client must refuse to send in clear)
"""

import argparse
import asyncio
import itertools
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP


def subject_of(cert):
    if not cert:
        return ""
    return ",".join(
        f"{key}={value}" for rdn in cert.get("subject", ()) for (key, value) in rdn
    )


class Handler:
    def __init__(self, out, mode):
        self.out = out
        self.mode = mode
        self.counter = itertools.count(1)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mode == "tempfail":
            return "451 4.3.0 Temporary failure, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "refuse" in address:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        number = next(self.counter)
        base = os.path.join(self.out, f"{number:04}")
        ssl_object = server.transport.get_extra_info("ssl_object")
        peer = subject_of(ssl_object.getpeercert()) if ssl_object else ""
        # The side files first: the test waits for the .eml.
        with open(base + ".peer", "w", encoding="utf-8") as f:
            f.write(peer)
        with open(base + ".envelope", "w", encoding="utf-8") as f:
            f.write("\n".join([envelope.mail_from] + envelope.rcpt_tos))
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".tmp", base + ".eml")
        return f"250 2.0.0 Ok: queued as TEST{number:04}"


def tls_context(args):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.load_verify_locations(args.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--mode", default="ok", choices=["ok", "tempfail", "plain"])
    parser.add_argument("--implicit", action="store_true")
    parser.add_argument("--port", type=int, default=0, help="default: one the system chooses")
    args = parser.parse_args()

    handler = Handler(args.out, args.mode)
    context = tls_context(args)
    loop = asyncio.get_running_loop()
    if args.mode == "plain":
        factory = lambda: SMTP(handler, hostname="mail.test")
        server = await loop.create_server(factory, "127.0.0.1", args.port)
    elif args.implicit:
        factory = lambda: SMTP(handler, hostname="mail.test")
        server = await loop.create_server(factory, "127.0.0.1", args.port, ssl=context)
    else:
        factory = lambda: SMTP(
            handler, hostname="mail.test", tls_context=context, require_starttls=True
        )
        server = await loop.create_server(factory, "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
