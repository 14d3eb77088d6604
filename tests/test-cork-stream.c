/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-test"

#include "config.h"

#include <string.h>

#include "outbox-smtp-cork-stream.h"

#define CAPACITY 4096

typedef struct
{
  GOutputStream        *base;
  GOutputStream        *stream;
  OutboxSmtpCorkStream *cork;
  GByteArray           *expected; /* everything written, in order */
} Fixture;

static void
fixture_setup (Fixture      *f,
               gconstpointer data)
{
  f->base = g_memory_output_stream_new_resizable ();
  f->stream = outbox_smtp_cork_stream_new (f->base, CAPACITY);
  f->cork = OUTBOX_SMTP_CORK_STREAM (f->stream);
  f->expected = g_byte_array_new ();
}

static void
fixture_teardown (Fixture      *f,
                  gconstpointer data)
{
  g_object_unref (f->stream);
  g_object_unref (f->base);
  g_byte_array_unref (f->expected);
}

static gsize
base_size (Fixture *f)
{
  return g_memory_output_stream_get_data_size (G_MEMORY_OUTPUT_STREAM (f->base));
}

static void
assert_base_is (Fixture *f,
                gsize    len)
{
  g_assert_cmpuint (base_size (f), ==, len);
  g_assert_cmpmem (g_memory_output_stream_get_data (G_MEMORY_OUTPUT_STREAM (f->base)), len,
                   f->expected->data, len);
}

/* @len bytes, different for each call, written with a blocking write. */
static void
write_piece (Fixture *f,
             gsize    len)
{
  g_autoptr (GError) error = NULL;
  g_autofree guint8 *piece = g_malloc (len);
  gssize             n;

  for (gsize i = 0; i < len; i++)
    piece[i] = (guint8) (f->expected->len + i * 7);
  g_byte_array_append (f->expected, piece, len);

  n = g_output_stream_write (f->stream, piece, len, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (n, ==, len);
}

static void
test_pass_through (Fixture      *f,
                   gconstpointer data)
{
  write_piece (f, 100);
  assert_base_is (f, 100);
  write_piece (f, 3 * CAPACITY);
  assert_base_is (f, 100 + 3 * CAPACITY);
}

static void
test_gather (Fixture      *f,
             gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  outbox_smtp_cork_stream_cork (f->cork);

  /* Four records fit: nothing goes out. */
  for (guint i = 0; i < 4; i++)
    write_piece (f, 1000);
  assert_base_is (f, 0);

  /* The fifth does not: the four go, the fifth waits. */
  write_piece (f, 1000);
  assert_base_is (f, 4000);

  for (guint i = 0; i < 5; i++)
    write_piece (f, 1000);
  assert_base_is (f, 8000);

  g_assert_true (outbox_smtp_cork_stream_uncork (f->cork, NULL, &error));
  g_assert_no_error (error);
  assert_base_is (f, 10000);

  /* Uncorked, writes pass through again. */
  write_piece (f, 10);
  assert_base_is (f, 10010);
}

static void
test_larger_than_capacity (Fixture      *f,
                           gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  outbox_smtp_cork_stream_cork (f->cork);
  write_piece (f, 100);
  assert_base_is (f, 0);

  /* What was gathered goes first, then the big write itself. */
  write_piece (f, 2 * CAPACITY + 1);
  assert_base_is (f, 100 + 2 * CAPACITY + 1);

  g_assert_true (outbox_smtp_cork_stream_uncork (f->cork, NULL, &error));
  assert_base_is (f, 100 + 2 * CAPACITY + 1);
}

/* A record from another thread (an alert) while corked: gathered in
 * order, whatever its size, and the stream says it is writable. */
static void
test_nonblocking (Fixture      *f,
                  gconstpointer data)
{
  GPollableOutputStream *pollable = G_POLLABLE_OUTPUT_STREAM (f->stream);
  g_autoptr (GError) error = NULL;
  guint8 alert[CAPACITY + 500];
  gssize n;

  g_assert_true (g_pollable_output_stream_can_poll (pollable));

  outbox_smtp_cork_stream_cork (f->cork);
  write_piece (f, 3000);

  memset (alert, 0x15, sizeof alert);
  g_byte_array_append (f->expected, alert, sizeof alert);
  g_assert_true (g_pollable_output_stream_is_writable (pollable));
  n = g_pollable_output_stream_write_nonblocking (pollable, alert, sizeof alert, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (n, ==, sizeof alert);
  assert_base_is (f, 0);

  /* A blocking write after it finds the buffer over its capacity. */
  write_piece (f, 10);
  assert_base_is (f, 3000 + sizeof alert);

  g_assert_true (outbox_smtp_cork_stream_uncork (f->cork, NULL, &error));
  assert_base_is (f, 3000 + sizeof alert + 10);

  /* Uncorked, a nonblocking write passes through. */
  g_byte_array_append (f->expected, alert, 20);
  n = g_pollable_output_stream_write_nonblocking (pollable, alert, 20, NULL, &error);
  g_assert_cmpint (n, ==, 20);
  assert_base_is (f, 3000 + sizeof alert + 30);
}

static void
test_close_flushes (Fixture      *f,
                    gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  outbox_smtp_cork_stream_cork (f->cork);
  write_piece (f, 1234);
  assert_base_is (f, 0);

  g_assert_true (g_output_stream_close (f->stream, NULL, &error));
  g_assert_no_error (error);
  assert_base_is (f, 1234);
  g_assert_true (g_output_stream_is_closed (f->base));
}

/* The socket fails under a gathered write: the error is the caller's,
 * at the flush that met it. */
static void
test_errors (void)
{
  static guint8 room[5000];
  g_autoptr (GOutputStream) base = g_memory_output_stream_new (room, sizeof room, NULL, NULL);
  g_autoptr (GOutputStream) stream = outbox_smtp_cork_stream_new (base, CAPACITY);
  OutboxSmtpCorkStream *cork = OUTBOX_SMTP_CORK_STREAM (stream);
  g_autoptr (GError) error = NULL;
  guint8 piece[3000];
  gssize n;

  memset (piece, 'x', sizeof piece);
  outbox_smtp_cork_stream_cork (cork);
  n = g_output_stream_write (stream, piece, sizeof piece, NULL, &error);
  g_assert_cmpint (n, ==, sizeof piece);

  /* The first 3000 go out to make room for the next; then there is room
   * for 2000 more, and the flush the third write needs fails. */
  n = g_output_stream_write (stream, piece, sizeof piece, NULL, &error);
  g_assert_cmpint (n, ==, sizeof piece);
  n = g_output_stream_write (stream, piece, sizeof piece, NULL, &error);
  g_assert_cmpint (n, ==, -1);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
  g_clear_error (&error);

  /* Nothing is kept for another try: uncorking has nothing to send. */
  g_assert_true (outbox_smtp_cork_stream_uncork (cork, NULL, &error));
  g_assert_no_error (error);

  outbox_smtp_cork_stream_cork (cork);
  n = g_output_stream_write (stream, piece, sizeof piece, NULL, &error);
  g_assert_cmpint (n, ==, sizeof piece);
  g_assert_false (outbox_smtp_cork_stream_uncork (cork, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
}

static void
test_cancelled (Fixture      *f,
                gconstpointer data)
{
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autoptr (GError) error = NULL;

  outbox_smtp_cork_stream_cork (f->cork);
  write_piece (f, 100);
  g_cancellable_cancel (cancellable);
  g_assert_false (outbox_smtp_cork_stream_uncork (f->cork, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpuint (base_size (f), ==, 0);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add ("/cork/pass-through", Fixture, NULL, fixture_setup, test_pass_through,
              fixture_teardown);
  g_test_add ("/cork/gather", Fixture, NULL, fixture_setup, test_gather, fixture_teardown);
  g_test_add ("/cork/larger-than-capacity", Fixture, NULL, fixture_setup,
              test_larger_than_capacity, fixture_teardown);
  g_test_add ("/cork/nonblocking", Fixture, NULL, fixture_setup, test_nonblocking,
              fixture_teardown);
  g_test_add ("/cork/close-flushes", Fixture, NULL, fixture_setup, test_close_flushes,
              fixture_teardown);
  g_test_add ("/cork/cancelled", Fixture, NULL, fixture_setup, test_cancelled, fixture_teardown);
  g_test_add_func ("/cork/errors", test_errors);

  return g_test_run ();
}
