#!/usr/bin/env python3
"""Reads a saved .eml with Python's own `email` package (an independent MIME parser) and
writes what the mail tests check: the decoded subject, the text part and the attachment.

usage: extract_attachment.py MESSAGE.eml OUT_DIR
Writes OUT_DIR/subject.txt, OUT_DIR/body.txt, OUT_DIR/<attachment file name>, and prints one
line per attachment: "<file name>\t<content type>".
"""

import os
import sys
from email import policy
from email.parser import BytesParser


def main():
    path, out = sys.argv[1], sys.argv[2]
    with open(path, "rb") as f:
        message = BytesParser(policy=policy.default).parse(f)
    with open(os.path.join(out, "subject.txt"), "w", encoding="utf-8") as f:
        f.write(str(message["subject"]))
    body = message.get_body(preferencelist=("plain",))
    with open(os.path.join(out, "body.txt"), "w", encoding="utf-8") as f:
        f.write(body.get_content() if body else "")
    for part in message.iter_attachments():
        name = os.path.basename(part.get_filename() or "attachment.bin")
        with open(os.path.join(out, name), "wb") as f:
            f.write(part.get_payload(decode=True))
        print(f"{name}\t{part.get_content_type()}")
    if message.defects:
        print(f"defects: {message.defects}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
