/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * outbox-test-smtp-server.h: a scripted loopback SMTP server for tests
 *
 * The server listens on 127.0.0.1 (never any other address) on a port chosen
 * by the kernel, and plays the same script of steps against every connection
 * it accepts.  It runs in its own threads with blocking I/O, so the client
 * under test can use the test's main context freely.
 *
 * Typical use:
 *
 *   g_autoptr (OutboxTestSmtpServer) srv = outbox_test_smtp_server_new (NULL, FALSE);
 *   outbox_test_smtp_server_send (srv, "220 test ESMTP\r\n");
 *   outbox_test_smtp_server_expect (srv, "EHLO *");
 *   ...
 *   outbox_test_smtp_server_start (srv);
 *   ... run the client against outbox_test_smtp_server_get_port (srv) ...
 *   g_assert_true (outbox_test_smtp_server_wait (srv, 5000));
 *   g_assert_null (outbox_test_smtp_server_get_failure (srv));
 *
 * Ownership: get_lines(), get_data() and get_data_nth() return new
 * references/copies (transfer full); get_failure() returns a string owned by
 * the server, valid until outbox_test_smtp_server_free().
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct _OutboxTestSmtpServer OutboxTestSmtpServer;

/* cert: server certificate with private key (NULL = no TLS possible).
 * implicit_tls: handshake as soon as a client connects (port 465 style). */
OutboxTestSmtpServer *outbox_test_smtp_server_new (GTlsCertificate *cert,
                                                   gboolean         implicit_tls);

/* Bound, in seconds, of every blocking read, write and TLS handshake
 * (default 30).  Call before start(). */
void outbox_test_smtp_server_set_timeout (OutboxTestSmtpServer *srv,
                                          guint                 seconds);

/* Script steps, played in order for each accepted connection (the same script
 * for every connection).  Add steps before start().  Step numbers in failure
 * texts are 1-based indices into this list. */

/* Write these exact bytes (may contain several lines, or no CRLF at all) in
 * ONE write (one TLS record under TLS when shorter than 16 KiB). */
void outbox_test_smtp_server_send (OutboxTestSmtpServer *srv,
                                   const char           *bytes);
void outbox_test_smtp_server_sendf (OutboxTestSmtpServer *srv,
                                    const char           *format,
                                    ...) G_GNUC_PRINTF (2, 3);
/* Large or binary replies: written in 64 KiB chunks; stops quietly if the
 * client hangs up. */
void outbox_test_smtp_server_send_bytes (OutboxTestSmtpServer *srv,
                                         GBytes               *bytes);
/* Read one CRLF-terminated line, record it, check it matches glob
 * (g_pattern_match_simple, case-sensitive).  A mismatch, EOF or timeout
 * records a failure and ends the script (the connection is closed). */
void outbox_test_smtp_server_expect (OutboxTestSmtpServer *srv,
                                     const char           *glob);
/* Server side TLS handshake now (after e.g. send "220 go ahead\r\n"). */
void outbox_test_smtp_server_starttls (OutboxTestSmtpServer *srv);
/* Read the DATA body up to and including "\r\n.\r\n" (or a lone ".\r\n" for
 * an empty body) and keep the raw bytes. */
void outbox_test_smtp_server_read_data (OutboxTestSmtpServer *srv);
/* Read n bytes of a DATA body and discard them: a server that has taken
 * only part of a message.  Nothing is kept for get_data().  EOF or a
 * timeout before n bytes is a failure. */
void outbox_test_smtp_server_read_bytes (OutboxTestSmtpServer *srv,
                                         gsize                 n);
/* Write bytes (as send_bytes; may be empty) while reading and discarding
 * whatever the client sends, then go on discarding until the client closes
 * or resets the connection: a server that answers in the middle of a DATA
 * body, so that neither side blocks the other.  A client hanging up at
 * any point is not a failure; not hanging up within the timeout is.  Ends
 * the script. */
void outbox_test_smtp_server_send_draining (OutboxTestSmtpServer *srv,
                                            GBytes               *bytes);
/* Close the connection now (TLS close_notify if TLS, then FIN) and end the
 * script. */
void outbox_test_smtp_server_close (OutboxTestSmtpServer *srv);
/* Abort the connection now with a TCP RST (no close_notify) and end the
 * script. */
void outbox_test_smtp_server_reset (OutboxTestSmtpServer *srv);
/* Do nothing until the client closes or the server is freed (bounded by the
 * timeout; reaching it is a failure).  Complete lines the client sends
 * meanwhile are recorded. */
void outbox_test_smtp_server_stall (OutboxTestSmtpServer *srv);
void outbox_test_smtp_server_sleep (OutboxTestSmtpServer *srv,
                                    guint                 ms);
/* Wait (at most 10 s) for the client to close; a line (recorded), partial
 * bytes or the timeout is a failure. */
void outbox_test_smtp_server_expect_close (OutboxTestSmtpServer *srv);

/* Bind 127.0.0.1:0 and spawn the server thread. */
void    outbox_test_smtp_server_start (OutboxTestSmtpServer *srv);
guint16 outbox_test_smtp_server_get_port (OutboxTestSmtpServer *srv);

/* Block until the script for the first connection has finished (all steps
 * done, failed, or connection ended); FALSE on timeout.  Does not iterate
 * any main context. */
gboolean outbox_test_smtp_server_wait (OutboxTestSmtpServer *srv,
                                       guint                 timeout_ms);
/* Same, until the scripts of n_connections connections have finished. */
gboolean outbox_test_smtp_server_wait_connections (OutboxTestSmtpServer *srv,
                                                   guint                 n_connections,
                                                   guint                 timeout_ms);

/* (transfer full): a new array of new strings (free with g_ptr_array_unref),
 * every line received from the client outside DATA, without CRLF, in order
 * of arrival over all connections, including lines read by stall and
 * expect_close. */
GPtrArray *outbox_test_smtp_server_get_lines (OutboxTestSmtpServer *srv);
/* (transfer full) (nullable): the raw bytes of every DATA body read by
 * read_data, concatenated in order of reading; NULL if none. */
GBytes *outbox_test_smtp_server_get_data (OutboxTestSmtpServer *srv);
guint   outbox_test_smtp_server_get_data_count (OutboxTestSmtpServer *srv);
/* (transfer full) (nullable): the index-th DATA body; NULL if out of range. */
GBytes *outbox_test_smtp_server_get_data_nth (OutboxTestSmtpServer *srv,
                                              guint                 index);
/* (transfer none) (nullable): NULL if every step succeeded, else the first
 * failure, e.g. "step 4: expected 'MAIL FROM:*' got 'AUTH PLAIN ...'" or
 * "step 4: client closed the connection".  Failures on the second and later
 * connections are prefixed with "connection N: ". */
const char *outbox_test_smtp_server_get_failure (OutboxTestSmtpServer *srv);
/* Whether the client closed its side (or reset the connection), as observed
 * by a script step, on any connection. */
gboolean outbox_test_smtp_server_get_client_closed (OutboxTestSmtpServer *srv);
guint    outbox_test_smtp_server_get_connection_count (OutboxTestSmtpServer *srv);

/* Stops: cancels any blocking I/O, closes listener and connections, joins
 * the threads.  Returns promptly. */
void outbox_test_smtp_server_free (OutboxTestSmtpServer *srv);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxTestSmtpServer, outbox_test_smtp_server_free)

G_END_DECLS
