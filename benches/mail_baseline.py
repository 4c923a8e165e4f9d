"""The baseline of `cargo bench --bench mail`: the same number of messages,
of the same shape (plain text and HTML, about the same size), sent with
Python's smtplib over one connection, as fast as it goes.

    python mail_baseline.py PORT COUNT
"""

import smtplib
import sys
import time
from email.message import EmailMessage


def main():
    port, count = int(sys.argv[1]), int(sys.argv[2])
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i in range(count):
            m = EmailMessage()
            m["From"] = "pglab <pglab@example.org>"
            m["To"] = f"Student {i} <base{i}@example.org>"
            m["Subject"] = "Your account for Mail bench"
            body = (
                f"Hello Student {i},\n\nyou take part in \"Mail bench\". Your account:\n\n"
                f"  username:          s{i}\n  initial password:  abcd-efgh-ijkl-{i:04}\n\n"
                f"Log in with psql:\n\n  psql -h 127.0.0.1 -p 5432 -U s{i} -d mb_s{i}\n"
            ) * 2
            m.set_content(body)
            m.add_alternative(f"<p>{body}</p>", subtype="html")
            smtp.send_message(m)
    print(f"{time.monotonic() - started:.3f}")


if __name__ == "__main__":
    main()
