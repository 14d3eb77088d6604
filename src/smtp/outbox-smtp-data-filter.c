/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-smtp"

#include "config.h"

#include "outbox-smtp-data-filter.h"

static const guint8 crlf[] = { '\r', '\n' };

void
outbox_smtp_data_filter_init (OutboxSmtpDataFilter *filter)
{
  filter->at_line_start = TRUE;
  filter->pending_cr = FALSE;
  filter->dot_stuffing = TRUE;
  filter->bytes_in = 0;
}

void
outbox_smtp_data_filter_init_bdat (OutboxSmtpDataFilter *filter)
{
  outbox_smtp_data_filter_init (filter);
  filter->dot_stuffing = FALSE;
}

static inline void
end_line (OutboxSmtpDataFilter *filter,
          GByteArray           *out)
{
  g_byte_array_append (out, crlf, 2);
  filter->at_line_start = TRUE;
}

void
outbox_smtp_data_filter_process (OutboxSmtpDataFilter *filter,
                                 const guint8         *data,
                                 gsize                 len,
                                 GByteArray           *out)
{
  gsize    run_start = 0;
  gboolean in_run = FALSE;

  filter->bytes_in += len;

  for (gsize i = 0; i < len; i++)
    {
      guint8 c = data[i];

      if (filter->pending_cr)
        {
          /* A CR ends the line whatever follows; a LF right after it
           * belongs to the same line ending. */
          filter->pending_cr = FALSE;
          end_line (filter, out);
          if (c == '\n')
            continue;
        }

      if (c != '\r' && c != '\n' && c != '\0')
        {
          /* Plain bytes are copied in runs; a line starting with "." gets
           * one more. */
          if (filter->at_line_start && c == '.' && filter->dot_stuffing)
            g_byte_array_append (out, (const guint8 *) ".", 1);
          filter->at_line_start = FALSE;
          if (!in_run)
            {
              run_start = i;
              in_run = TRUE;
            }
          continue;
        }

      if (in_run)
        {
          g_byte_array_append (out, data + run_start, i - run_start);
          in_run = FALSE;
        }

      if (c == '\r')
        filter->pending_cr = TRUE;
      else if (c == '\n')
        end_line (filter, out);
      /* NUL bytes are dropped. */
    }

  if (in_run)
    g_byte_array_append (out, data + run_start, len - run_start);
}

void
outbox_smtp_data_filter_finish (OutboxSmtpDataFilter *filter,
                                GByteArray           *out)
{
  if (filter->pending_cr)
    {
      filter->pending_cr = FALSE;
      end_line (filter, out);
    }

  if (!filter->at_line_start)
    end_line (filter, out);

  if (filter->dot_stuffing)
    g_byte_array_append (out, (const guint8 *) ".\r\n", 3);
}
