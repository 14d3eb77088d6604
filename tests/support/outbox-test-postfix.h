/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * outbox-test-postfix.h: a private Postfix instance on loopback for tests
 *
 * outbox_test_postfix_start() runs a separate Postfix instance ("postfix -c
 * DIR start") from its own configuration, queue and data directories in a
 * temporary directory.  It listens on two ports of 127.0.0.1 picked at run
 * time, never on port 25, and never touches the machine's default instance.
 *
 *  - the submission port requires STARTTLS before anything else
 *    (smtpd_tls_security_level=encrypt) and offers AUTH only after it;
 *  - the smtps port is implicit TLS (smtpd_tls_wrappermode=yes);
 *  - both offer SASL AUTH PLAIN, LOGIN, SCRAM-SHA-1 and SCRAM-SHA-256 for one
 *    user (get_username()/get_password()), and relay nothing for
 *    unauthenticated clients (MAIL is accepted, RCPT gets 554 5.7.1);
 *  - every recipient accepted from an authenticated client, in any domain,
 *    is delivered (one copy per recipient) into one Maildir; nothing is
 *    ever sent anywhere else;
 *  - RCPT TO:<nobody@outbox.test> is refused with
 *    "550 5.1.1 <nobody@outbox.test>: Recipient address rejected: no such user".
 *
 * This needs root and an installed Postfix with Cyrus SASL (sasl2-bin,
 * libsasl2-modules); otherwise start() fails with G_IO_ERROR_NOT_SUPPORTED.
 */

#pragma once

#include <gio/gio.h>

#include "outbox-test-ca.h"

G_BEGIN_DECLS

typedef struct _OutboxTestPostfix OutboxTestPostfix;

/* Serves the VALID certificate of @ca.  Returns once both ports have
 * greeted with 220. */
OutboxTestPostfix *outbox_test_postfix_start               (OutboxTestCa       *ca,
                                                            GError            **error);
/* 127.0.0.1; STARTTLS required, SASL AUTH only after STARTTLS. */
guint16            outbox_test_postfix_get_submission_port (OutboxTestPostfix  *pf);
/* 127.0.0.1; implicit TLS, SASL AUTH, no CHUNKING (so clients use DATA). */
guint16            outbox_test_postfix_get_smtps_port      (OutboxTestPostfix  *pf);
/* "alice@outbox.test": what the client types as user name. */
const char        *outbox_test_postfix_get_username        (OutboxTestPostfix  *pf);
const char        *outbox_test_postfix_get_password        (OutboxTestPostfix  *pf);
/* The Maildir (with cur/, new/ and tmp/) every accepted copy goes to. */
const char        *outbox_test_postfix_get_maildir         (OutboxTestPostfix  *pf);
/* Waits up to @timeout_ms until at least @n messages are in new/, then
 * returns all of them as GBytes (raw file contents, LF line ends) sorted by
 * their Delivered-To (then by arrival), and removes them from the Maildir.
 * On timeout, fails with G_IO_ERROR_TIMED_OUT, saying how many arrived and
 * quoting the tail of the Postfix log; nothing is removed then. */
GPtrArray         *outbox_test_postfix_wait_for_messages   (OutboxTestPostfix  *pf,
                                                            guint               n,
                                                            guint               timeout_ms,
                                                            GError            **error);
/* Strips the header fields Postfix put on top on delivery (Return-Path,
 * Delivered-To, X-Original-To and its own Received, with their continuation
 * lines) and returns the rest byte for byte in @original.
 * @envelope_recipient comes from Delivered-To, @envelope_sender from
 * Return-Path without the <> ("" for the null sender).  Each out argument
 * may be NULL. */
gboolean           outbox_test_postfix_split_delivered     (GBytes             *raw,
                                                            char              **envelope_recipient,
                                                            char              **envelope_sender,
                                                            GBytes            **original,
                                                            GError            **error);
/* The whole maillog file; owned by @pf until the next call. */
const char        *outbox_test_postfix_get_log             (OutboxTestPostfix  *pf);
/* Stops the instance, waits until none of its processes is left, deletes
 * its directory and frees @pf. */
void               outbox_test_postfix_stop                (OutboxTestPostfix  *pf);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxTestPostfix, outbox_test_postfix_stop)

G_END_DECLS
