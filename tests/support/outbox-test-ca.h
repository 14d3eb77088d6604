/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * outbox-test-ca.h: a throw-away certificate authority for tests
 *
 * Keys and certificates are made at test time with the openssl(1) command
 * line tool: ECDSA P-256 keys, SHA-256 signatures.  The CA certificate has
 * basicConstraints CA:TRUE and keyUsage keyCertSign; every server
 * certificate has extendedKeyUsage serverAuth.
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct _OutboxTestCa OutboxTestCa;

typedef enum
{
  /* signed by the test CA, SAN DNS:localhost, IP:127.0.0.1, IP:::1, valid now */
  OUTBOX_TEST_CERT_VALID,
  /* signed by the test CA, same names, validity entirely in the past */
  OUTBOX_TEST_CERT_EXPIRED,
  /* signed by the test CA, only DNS:wrong.example (no IP SANs) */
  OUTBOX_TEST_CERT_WRONG_HOST,
  /* self-signed, same names as VALID */
  OUTBOX_TEST_CERT_SELF_SIGNED,
  /* signed by a second, untrusted CA, same names as VALID */
  OUTBOX_TEST_CERT_UNKNOWN_CA,
  /* signed by the test CA, only DNS:mail.outbox.test (no IP SANs) */
  OUTBOX_TEST_CERT_HOST_ONLY,
} OutboxTestCertKind;

/* Generates the CA and the VALID server certificate in @dir, which must
 * exist.  The other kinds are generated on first use. */
OutboxTestCa    *outbox_test_ca_new             (const char          *dir,
                                                 GError             **error);
/* The CA certificate (PEM): what an account's "extra CA file" points to. */
const char      *outbox_test_ca_get_ca_file     (OutboxTestCa        *ca);
/* The VALID server certificate (PEM, leaf only). */
const char      *outbox_test_ca_get_cert_file   (OutboxTestCa        *ca);
/* The VALID server key (PEM, PKCS#8, unencrypted). */
const char      *outbox_test_ca_get_key_file    (OutboxTestCa        *ca);
/* A certificate with its private key, for GIO TLS servers; generated
 * lazily and cached: (transfer none). */
GTlsCertificate *outbox_test_ca_get_certificate (OutboxTestCa        *ca,
                                                 OutboxTestCertKind   kind,
                                                 GError             **error);
/* The PEM files of @kind; the strings are owned by @ca. */
gboolean         outbox_test_ca_get_files       (OutboxTestCa        *ca,
                                                 OutboxTestCertKind   kind,
                                                 const char         **cert_file,
                                                 const char         **key_file,
                                                 GError             **error);
void             outbox_test_ca_free            (OutboxTestCa        *ca);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OutboxTestCa, outbox_test_ca_free)

G_END_DECLS
