#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""A real SMTP server for the tests, built on aiosmtpd.

Listens on 127.0.0.1 on a port the kernel picks, prints that port on
stdout (one line) once it accepts connections, and runs until stdin is
closed (for instance because the test that started it died) or until
SIGTERM or SIGINT.

Every accepted transaction is appended as one JSON line to the file given
with --record:

    {"mail_from": "...", "mail_options": [...],
     "rcpts": [{"address": "...", "options": [...]}, ...],
     "content": "<base64>", "smtputf8": true}

Addresses and parameters are recorded exactly as the client sent them
(aiosmtpd itself upper-cases parameters, which would hide the case of an
ENVID). The content is the message after dot-unstuffing, with the line
endings that came over the wire.

By default the server offers SIZE, 8BITMIME, SMTPUTF8 and DSN (RFC 3461:
RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT, which aiosmtpd 1.4 does
not know). --plain offers none of 8BITMIME, SMTPUTF8 and DSN, and refuses
their parameters as well as 8-bit commands and data. --size N sets the
SIZE limit.

Exits with status 77 if aiosmtpd is not installed.
"""

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import sys

try:
    from aiosmtpd.smtp import SMTP
except ImportError:
    print('aiosmtpd-server: python3-aiosmtpd is not installed',
          file=sys.stderr)
    sys.exit(77)

HOSTNAME = 'aiosmtpd.test'

# RFC 3461 section 4: xtext, and the values of the DSN parameters.
XTEXT = r'(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*'
DSN_MAIL_PARAMS = {
    'RET': re.compile(r'(?i:FULL|HDRS)'),
    'ENVID': re.compile(XTEXT),
}
DSN_RCPT_PARAMS = {
    'NOTIFY': re.compile(r'(?i:NEVER|(?:SUCCESS|FAILURE|DELAY)'
                         r'(?:,(?:SUCCESS|FAILURE|DELAY))*)'),
    'ORCPT': re.compile(r'[A-Za-z0-9-]+;' + XTEXT),
}


def unbracket(path):
    if path.startswith('<') and path.endswith('>'):
        return path[1:-1]
    return path


class Envelope:
    """What a transaction carried, as sent."""

    def __init__(self):
        self.mail_from = None
        self.mail_options = []
        self.rcpts = []


class DsnSMTP(SMTP):
    """aiosmtpd's SMTP with the DSN parameters, and a raw record."""

    def __init__(self, handler, *, dsn, **kwargs):
        super().__init__(handler, **kwargs)
        self.dsn = dsn
        self.raw = Envelope()

    def _set_post_data_state(self):
        super()._set_post_data_state()
        self.raw = Envelope()

    def _split(self, keyword, arg):
        """(path with brackets, [parameters]) of a MAIL or RCPT argument,
        or None if aiosmtpd is to report the syntax error."""
        if arg is None:
            return None
        rest = self._strip_command_keyword(keyword, arg)
        if rest is None:
            return None
        address, params = self._getaddr(rest)
        if not address:
            return None
        path = rest[:len(rest) - len(params)].strip()
        return path, params.split()

    async def _command(self, keyword, arg, dsn_params, call):
        """Checks and removes the DSN parameters, then lets aiosmtpd
        handle the rest. Returns the path and all the parameters as sent,
        or None if the command was refused before aiosmtpd saw it."""
        split = self._split(keyword, arg)
        if split is None or not self.session.extended_smtp:
            await call(arg)
            return None
        path, params = split
        kept = []
        seen = set()
        for param in params:
            name, eq, value = param.partition('=')
            pattern = dsn_params.get(name.upper()) if self.dsn else None
            if pattern is None:
                kept.append(param)
                continue
            if not eq or not pattern.fullmatch(value):
                await self.push(f'501 5.5.4 Invalid {name.upper()} parameter')
                return None
            if name.upper() in seen:
                await self.push(f'501 5.5.4 Repeated {name.upper()} parameter')
                return None
            seen.add(name.upper())
        await call(' '.join([keyword + path] + kept))
        return path, params

    async def smtp_MAIL(self, arg):
        had_sender = self.envelope.mail_from is not None
        result = await self._command('FROM:', arg, DSN_MAIL_PARAMS,
                                     super().smtp_MAIL)
        if result and not had_sender and self.envelope.mail_from is not None:
            path, params = result
            self.raw.mail_from = unbracket(path)
            self.raw.mail_options = params

    async def smtp_RCPT(self, arg):
        count = len(self.envelope.rcpt_tos)
        result = await self._command('TO:', arg, DSN_RCPT_PARAMS,
                                     super().smtp_RCPT)
        if result and len(self.envelope.rcpt_tos) > count:
            path, params = result
            self.raw.rcpts.append({'address': unbracket(path),
                                   'options': params})


class Recorder:
    """The aiosmtpd handler: offers DSN, records transactions."""

    def __init__(self, path):
        self.path = path

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        session.host_name = hostname
        if server.dsn:
            responses.insert(len(responses) - 1, '250-DSN')
        return responses

    async def handle_DATA(self, server, session, envelope):
        record = {
            'mail_from': server.raw.mail_from,
            'mail_options': server.raw.mail_options,
            'rcpts': server.raw.rcpts,
            'content': base64.b64encode(envelope.original_content).decode(),
            'smtputf8': envelope.smtp_utf8,
        }
        with open(self.path, 'a', encoding='ascii') as f:
            f.write(json.dumps(record) + '\n')
        return '250 2.0.0 OK recorded'


async def serve(args):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handler = Recorder(args.record)

    def factory():
        return DsnSMTP(handler, dsn=not args.plain,
                       data_size_limit=args.size,
                       enable_SMTPUTF8=not args.plain,
                       decode_data=args.plain,
                       hostname=HOSTNAME, loop=loop)

    def on_stdin():
        try:
            data = os.read(sys.stdin.fileno(), 4096)
        except OSError:
            data = b''
        if not data:
            stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_reader(sys.stdin.fileno(), on_stdin)

    server = await loop.create_server(factory, host='127.0.0.1', port=0)
    print(server.sockets[0].getsockname()[1], flush=True)

    await stop.wait()

    loop.remove_reader(sys.stdin.fileno())
    server.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--record', required=True,
                        help='file to append one JSON line per message to')
    parser.add_argument('--plain', action='store_true',
                        help='offer none of 8BITMIME, SMTPUTF8 and DSN')
    parser.add_argument('--size', type=int, default=10 * 1024 * 1024,
                        help='the SIZE limit in bytes (default 10 MiB)')
    asyncio.run(serve(parser.parse_args()))


if __name__ == '__main__':
    main()
