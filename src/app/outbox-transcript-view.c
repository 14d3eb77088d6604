/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-app"

#include "config.h"

#include <glib/gi18n.h>
#include <string.h>

#include "outbox-transcript-view.h"

/* How long the Copy button says "Copied". */
#define COPIED_FEEDBACK_MS 1500
/* As wide as what goes before every line: "HH:MM:SS.mmm C: ". */
#define LINE_LEAD "0000000000000000"

/* Colours that read well on the light and the dark Adwaita backgrounds:
 * on light the GNOME palette's blue 4 and red 4, on dark Adwaita's dark
 * accent and error colours; darker or lighter still for high contrast. */
typedef struct
{
  const char *client;
  const char *server_error;
  const char *dim;
} Palette;

static const Palette light_palette = { "#1c71d8", "#c01c28", "rgba(0,0,0,0.55)" };
static const Palette dark_palette = { "#78aeed", "#ff7b63", "rgba(255,255,255,0.55)" };
static const Palette light_hc_palette = { "#1a5fb4", "#a51d2d", "rgba(0,0,0,0.8)" };
static const Palette dark_hc_palette = { "#99c1f1", "#ff938c", "rgba(255,255,255,0.8)" };

struct _OutboxTranscriptView
{
  AdwBin parent_instance;

  GtkTextTag    *time_tag;
  GtkTextTag    *client_tag;
  GtkTextTag    *server_error_tag;
  GtkTextTag    *info_tag;
  GtkTextTag    *prefix_tag;
  GtkTextTag    *line_tag;
  const Palette *palette;
  int            lead_width;

  guint n_lines;
  guint copied_source;
  guint scroll_source;
  /* The vertical adjustment's, when its value last changed. */
  double page_size;
  double upper;
  /* Whether the view is scrolled to the end, so follows new lines. */
  guint follow : 1;

  /* Template children */
  GtkLabel          *count_label;
  AdwButtonContent  *copy_content;
  GtkStack          *stack;
  GtkScrolledWindow *scroller;
  GtkTextView       *text_view;
};

G_DEFINE_FINAL_TYPE (OutboxTranscriptView, outbox_transcript_view, ADW_TYPE_BIN)

/* Helpers */

static void
update_count (OutboxTranscriptView *self)
{
  g_autofree char *text = NULL;

  if (self->n_lines > 0)
    /* Translators: the number of lines in the transcript */
    text = g_strdup_printf (ngettext ("%u line", "%u lines", self->n_lines), self->n_lines);

  gtk_label_set_text (self->count_label, text != NULL ? text : "");

  /* Only when it changes: this runs for every line. */
  if (self->n_lines <= 1)
    {
      gtk_stack_set_visible_child_name (self->stack, self->n_lines > 0 ? "lines" : "empty");
      gtk_widget_action_set_enabled (GTK_WIDGET (self), "transcript.copy", self->n_lines > 0);
    }
}

static void
set_tag_color (GtkTextTag *tag,
               const char *spec)
{
  GdkRGBA color;

  if (gdk_rgba_parse (&color, spec))
    g_object_set (tag, "foreground-rgba", &color, NULL);
}

/* Sets the tags' colours for the current style, and the hanging indent
 * that lines up the rest of a wrapped line after the time and prefix.
 * Tags are only touched when something changed: every change lays the
 * whole buffer out again. */
static void
update_tags (OutboxTranscriptView *self)
{
  AdwStyleManager *manager = adw_style_manager_get_default ();
  gboolean         dark = adw_style_manager_get_dark (manager);
  gboolean         high_contrast = adw_style_manager_get_high_contrast (manager);
  const Palette   *palette;
  int              width = 0;
  g_autoptr (PangoLayout) layout = NULL;

  /* Styles still change while the widget is torn down. */
  if (self->text_view == NULL)
    return;

  if (high_contrast)
    palette = dark ? &dark_hc_palette : &light_hc_palette;
  else
    palette = dark ? &dark_palette : &light_palette;

  if (palette != self->palette)
    {
      self->palette = palette;
      set_tag_color (self->time_tag, palette->dim);
      set_tag_color (self->info_tag, palette->dim);
      set_tag_color (self->client_tag, palette->client);
      set_tag_color (self->server_error_tag, palette->server_error);
    }

  layout = gtk_widget_create_pango_layout (GTK_WIDGET (self->text_view), LINE_LEAD);
  pango_layout_get_pixel_size (layout, &width, NULL);

  if (width > 0 && width != self->lead_width)
    {
      self->lead_width = width;
      /* A negative indent hangs: the first line at the margin, the
       * others that far in. */
      g_object_set (self->line_tag, "indent", -width, NULL);
    }
}

static gboolean
reply_is_error (const char *line)
{
  return (line[0] == '4' || line[0] == '5') && g_ascii_isdigit (line[1]) &&
         g_ascii_isdigit (line[2]) && (line[3] == ' ' || line[3] == '-' || line[3] == '\0');
}

static gboolean
scroll_to_end_cb (gpointer user_data)
{
  OutboxTranscriptView *self = user_data;
  GtkAdjustment        *adjustment = gtk_scrolled_window_get_vadjustment (self->scroller);

  self->scroll_source = 0;

  if (self->follow)
    gtk_adjustment_set_value (adjustment, gtk_adjustment_get_upper (adjustment) -
                                            gtk_adjustment_get_page_size (adjustment));

  return G_SOURCE_REMOVE;
}

/* Once for a burst of lines, after the text view has had its say. */
static void
queue_scroll_to_end (OutboxTranscriptView *self)
{
  if (self->scroll_source == 0)
    self->scroll_source = g_idle_add (scroll_to_end_cb, self);
}

/* Callbacks */

static void
on_vadjustment_value_changed_cb (GtkAdjustment        *adjustment,
                                 OutboxTranscriptView *self)
{
  double page = gtk_adjustment_get_page_size (adjustment);
  double upper = gtk_adjustment_get_upper (adjustment);
  double end = upper - page;

  /* At the end, whoever moved there: follow. */
  if (gtk_adjustment_get_value (adjustment) >= end - 1.0)
    {
      self->follow = TRUE;
    }
  /* Not laid out yet, resized, or lines laid out anew: the text view
   * moved to keep its top line in place, not the user. */
  else if (page <= 0 || page != self->page_size || upper != self->upper)
    {
      if (self->follow)
        queue_scroll_to_end (self);
    }
  /* The user scrolled back: stay there. */
  else
    {
      self->follow = FALSE;
    }

  self->page_size = page;
  self->upper = upper;
}

static void
on_vadjustment_changed_cb (GtkAdjustment        *adjustment,
                           OutboxTranscriptView *self)
{
  /* More lines, their real height once laid out, or a new size. */
  if (self->follow)
    queue_scroll_to_end (self);
}

static void
on_style_changed_cb (OutboxTranscriptView *self)
{
  update_tags (self);
}

static gboolean
copied_feedback_done_cb (gpointer user_data)
{
  OutboxTranscriptView *self = user_data;

  self->copied_source = 0;
  adw_button_content_set_icon_name (self->copy_content, "edit-copy-symbolic");
  adw_button_content_set_label (self->copy_content, _("Copy"));

  return G_SOURCE_REMOVE;
}

/* Actions */

static void
transcript_copy_action (GtkWidget  *widget,
                        const char *action_name,
                        GVariant   *param)
{
  outbox_transcript_view_copy (OUTBOX_TRANSCRIPT_VIEW (widget));
}

static void
transcript_hide_action (GtkWidget  *widget,
                        const char *action_name,
                        GVariant   *param)
{
  gtk_widget_set_visible (widget, FALSE);
}

/* Vfuncs */

static void
outbox_transcript_view_css_changed (GtkWidget         *widget,
                                    GtkCssStyleChange *change)
{
  GTK_WIDGET_CLASS (outbox_transcript_view_parent_class)->css_changed (widget, change);

  /* A new font changes the hanging indent. */
  update_tags (OUTBOX_TRANSCRIPT_VIEW (widget));
}

static void
outbox_transcript_view_dispose (GObject *object)
{
  OutboxTranscriptView *self = OUTBOX_TRANSCRIPT_VIEW (object);

  g_clear_handle_id (&self->copied_source, g_source_remove);
  g_clear_handle_id (&self->scroll_source, g_source_remove);

  gtk_widget_dispose_template (GTK_WIDGET (self), OUTBOX_TYPE_TRANSCRIPT_VIEW);

  G_OBJECT_CLASS (outbox_transcript_view_parent_class)->dispose (object);
}

static void
outbox_transcript_view_class_init (OutboxTranscriptViewClass *klass)
{
  GObjectClass   *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = outbox_transcript_view_dispose;

  widget_class->css_changed = outbox_transcript_view_css_changed;

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/outbox/Outbox/outbox-transcript-view.ui");
  gtk_widget_class_bind_template_child (widget_class, OutboxTranscriptView, count_label);
  gtk_widget_class_bind_template_child (widget_class, OutboxTranscriptView, copy_content);
  gtk_widget_class_bind_template_child (widget_class, OutboxTranscriptView, stack);
  gtk_widget_class_bind_template_child (widget_class, OutboxTranscriptView, scroller);
  gtk_widget_class_bind_template_child (widget_class, OutboxTranscriptView, text_view);

  gtk_widget_class_install_action (widget_class, "transcript.copy", NULL, transcript_copy_action);
  gtk_widget_class_install_action (widget_class, "transcript.hide", NULL, transcript_hide_action);

  gtk_widget_class_set_css_name (widget_class, "transcriptview");
}

static void
outbox_transcript_view_init (OutboxTranscriptView *self)
{
  GtkTextBuffer   *buffer;
  GtkAdjustment   *adjustment;
  AdwStyleManager *manager = adw_style_manager_get_default ();

  gtk_widget_init_template (GTK_WIDGET (self));

  self->follow = TRUE;

  buffer = gtk_text_view_get_buffer (self->text_view);
  self->line_tag = gtk_text_buffer_create_tag (buffer, "line", NULL);
  self->time_tag = gtk_text_buffer_create_tag (buffer, "time", NULL);
  self->prefix_tag = gtk_text_buffer_create_tag (buffer, "prefix", "weight", PANGO_WEIGHT_BOLD, NULL);
  self->client_tag = gtk_text_buffer_create_tag (buffer, "client", NULL);
  self->server_error_tag = gtk_text_buffer_create_tag (buffer, "server-error", NULL);
  self->info_tag = gtk_text_buffer_create_tag (buffer, "info", "style", PANGO_STYLE_ITALIC, NULL);

  adjustment = gtk_scrolled_window_get_vadjustment (self->scroller);
  g_signal_connect_object (adjustment, "value-changed",
                           G_CALLBACK (on_vadjustment_value_changed_cb), self, 0);
  g_signal_connect_object (adjustment, "changed", G_CALLBACK (on_vadjustment_changed_cb), self, 0);

  g_signal_connect_object (manager, "notify::dark", G_CALLBACK (on_style_changed_cb), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (manager, "notify::high-contrast", G_CALLBACK (on_style_changed_cb),
                           self, G_CONNECT_SWAPPED);

  update_tags (self);
  update_count (self);
}

/* Public API */

GtkWidget *
outbox_transcript_view_new (void)
{
  return g_object_new (OUTBOX_TYPE_TRANSCRIPT_VIEW, NULL);
}

void
outbox_transcript_view_clear (OutboxTranscriptView *self)
{
  g_return_if_fail (OUTBOX_IS_TRANSCRIPT_VIEW (self));

  gtk_text_buffer_set_text (gtk_text_view_get_buffer (self->text_view), "", 0);
  self->n_lines = 0;
  self->follow = TRUE;
  update_count (self);
}

void
outbox_transcript_view_append (OutboxTranscriptView    *self,
                               OutboxSmtpTranscriptKind kind,
                               GDateTime               *time,
                               const char              *line)
{
  GtkTextBuffer *buffer;
  GtkTextIter    iter;
  GtkTextIter    start;
  GtkTextTag    *text_tag = NULL;
  const char    *prefix;
  g_autoptr (GDateTime) now = NULL;
  char  stamp[32];
  gsize len;
  int   start_offset;

  g_return_if_fail (OUTBOX_IS_TRANSCRIPT_VIEW (self));
  g_return_if_fail (kind <= OUTBOX_SMTP_TRANSCRIPT_INFO);

  if (line == NULL)
    line = "";

  if (time == NULL)
    time = now = g_date_time_new_now_local ();

  g_snprintf (stamp, sizeof stamp, "%02d:%02d:%02d.%03d ", g_date_time_get_hour (time),
              g_date_time_get_minute (time), g_date_time_get_second (time),
              g_date_time_get_microsecond (time) / 1000);

  switch (kind)
    {
    case OUTBOX_SMTP_TRANSCRIPT_CLIENT:
      prefix = "C: ";
      text_tag = self->client_tag;
      break;

    case OUTBOX_SMTP_TRANSCRIPT_SERVER:
      prefix = "S: ";
      if (reply_is_error (line))
        text_tag = self->server_error_tag;
      break;

    case OUTBOX_SMTP_TRANSCRIPT_INFO:
    default:
      prefix = "* ";
      text_tag = self->info_tag;
      break;
    }

  /* The engine already made every line visible, but a line is a line: a
   * newline inside one would break the one-line-per-entry format. */
  len = strcspn (line, "\r\n");

  buffer = gtk_text_view_get_buffer (self->text_view);
  gtk_text_buffer_get_end_iter (buffer, &iter);
  start_offset = gtk_text_iter_get_offset (&iter);

  gtk_text_buffer_insert_with_tags (buffer, &iter, stamp, -1, self->time_tag, NULL);
  gtk_text_buffer_insert_with_tags (buffer, &iter, prefix, -1, self->prefix_tag, text_tag, NULL);
  gtk_text_buffer_insert_with_tags (buffer, &iter, line, len, text_tag, NULL);
  gtk_text_buffer_insert (buffer, &iter, "\n", 1);

  gtk_text_buffer_get_iter_at_offset (buffer, &start, start_offset);
  gtk_text_buffer_apply_tag (buffer, self->line_tag, &start, &iter);

  self->n_lines++;
  update_count (self);
}

guint
outbox_transcript_view_get_n_lines (OutboxTranscriptView *self)
{
  g_return_val_if_fail (OUTBOX_IS_TRANSCRIPT_VIEW (self), 0);

  return self->n_lines;
}

char *
outbox_transcript_view_dup_text (OutboxTranscriptView *self)
{
  GtkTextBuffer *buffer;
  GtkTextIter    start, end;

  g_return_val_if_fail (OUTBOX_IS_TRANSCRIPT_VIEW (self), NULL);

  buffer = gtk_text_view_get_buffer (self->text_view);
  gtk_text_buffer_get_bounds (buffer, &start, &end);

  return gtk_text_buffer_get_text (buffer, &start, &end, FALSE);
}

void
outbox_transcript_view_copy (OutboxTranscriptView *self)
{
  g_autofree char *text = NULL;

  g_return_if_fail (OUTBOX_IS_TRANSCRIPT_VIEW (self));

  text = outbox_transcript_view_dup_text (self);
  gdk_clipboard_set_text (gtk_widget_get_clipboard (GTK_WIDGET (self)), text);

  adw_button_content_set_icon_name (self->copy_content, "object-select-symbolic");
  adw_button_content_set_label (self->copy_content, _("Copied"));
  g_clear_handle_id (&self->copied_source, g_source_remove);
  self->copied_source = g_timeout_add (COPIED_FEEDBACK_MS, copied_feedback_done_cb, self);
}
