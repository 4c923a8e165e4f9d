"""An SMTP server for pglab's tests (aiosmtpd): records every message it
accepts as a JSON line, and can misbehave on purpose.

    python sink.py --port P --out FILE [--delay S]

Recipients whose address starts with "temp" get "451 4.3.0 try again
later" for the first two attempts of their message, then it is accepted;
those starting with "bounce" get "550 5.1.1 no such user".
--delay S      wait S seconds before answering a message
--refuse-sender  answer every MAIL FROM with "530 5.7.0 authentication
               required" (a server that wants a login)
"""

import argparse
import asyncio
import json
import signal

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out, delay, refuse_sender):
        self.out = out
        self.delay = delay
        self.refuse_sender = refuse_sender
        self.attempts = {}

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.refuse_sender:
            return "530 5.7.0 authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith("bounce"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        key = ",".join(envelope.rcpt_tos)
        n = self.attempts.get(key, 0) + 1
        self.attempts[key] = n
        if key.lower().startswith("temp") and n <= 2:
            return "451 4.3.0 try again later"
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 2.0.0 queued as %d" % n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--refuse-sender", action="store_true")
    a = p.parse_args()
    controller = Controller(
        Sink(a.out, a.delay, a.refuse_sender), hostname="127.0.0.1", port=a.port
    )
    controller.start()
    print("listening", flush=True)
    stop = asyncio.new_event_loop()
    signal.signal(signal.SIGTERM, lambda *_: stop.call_soon_threadsafe(stop.stop))
    try:
        stop.run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
