/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "outbox-app"

#include "config.h"

#include <glib/gi18n.h>
#include <string.h>

#include "outbox-compose-window.h"
#include "outbox-secrets.h"
#include "outbox-sender.h"
#include "outbox-smtp-client.h"
#include "outbox-transcript-view.h"

/* Messages at least this large show a percentage while uploading. */
#define LARGE_MESSAGE_BYTES (64 * 1024)
/* How long "Sent" stays on screen before the window closes. */
#define CLOSE_AFTER_SENT_MS 1200
/* The transcript pane's height when first shown, and its least. */
#define TRANSCRIPT_HEIGHT     240
#define TRANSCRIPT_MIN_HEIGHT 120
/* What the message text keeps, at least, when the pane opens. */
#define BODY_MIN_HEIGHT 72

#define TITLE_STORE_FAILED   _("The message could not be saved to the outbox")
#define TITLE_KEYRING_FAILED _("Your password could not be read from the keyring")
#define SUGGEST_CHECK_DISK \
  _("Check that your home folder is writable and not full, then try again.")
#define SUGGEST_UNLOCK_KEYRING \
  _("Make sure the desktop keyring is running and unlocked, then try again.")

typedef enum
{
  FIELD_TO,
  FIELD_CC,
  FIELD_BCC,
  N_RECIPIENT_FIELDS
} RecipientField;

struct _OutboxComposeWindow
{
  AdwApplicationWindow parent_instance;

  OutboxStore   *store;
  OutboxAccount *account;
  GSettings     *settings;

  /* The send in progress, if any. */
  GCancellable     *cancellable;
  OutboxSmtpClient *client;
  GBytes           *message;
  OutboxEnvelope   *envelope;
  char             *outbox_id;
  guint64           message_size;
  OutboxSmtpStep    step;

  char *status_text;
  char *server_text;
  guint close_source;
  int   transcript_height;

  guint sending : 1;
  guint cancel_requested : 1;
  guint sent : 1;
  /* The last send ended after the final dot without the server's answer:
   * the user chooses between Send Again and Mark as Sent. */
  guint delivery_unknown : 1;
  guint marking_sent : 1;
  guint discard_confirmed : 1;
  guint disposed : 1;

  /* Template children */
  AdwToastOverlay      *toast_overlay;
  AdwWindowTitle       *window_title;
  GtkLabel             *from_label;
  GtkGrid              *header_grid;
  GtkEntry             *to_entry;
  GtkEntry             *cc_entry;
  GtkEntry             *bcc_entry;
  GtkLabel             *to_error;
  GtkLabel             *cc_error;
  GtkLabel             *bcc_error;
  GtkEntry             *subject_entry;
  GtkTextView          *body_view;
  GtkRevealer          *error_revealer;
  GtkWidget            *error_box;
  GtkImage             *error_icon;
  GtkLabel             *error_title;
  GtkLabel             *error_server_text;
  GtkWidget            *error_server_scroller;
  GtkLabel             *error_explanation;
  GtkLabel             *error_suggestion;
  GtkLabel             *error_note;
  GtkWidget            *error_actions;
  GtkWidget            *error_transcript_button;
  GtkWidget            *delivery_unknown_actions;
  GtkWidget            *mark_sent_button;
  GtkWidget            *send_again_button;
  GtkPaned             *body_paned;
  OutboxTranscriptView *transcript_view;
  GtkRevealer          *progress_revealer;
  GtkStack             *progress_icon_stack;
  GtkSpinner           *progress_spinner;
  GtkLabel             *progress_label;
  GtkProgressBar       *progress_bar;
  GtkWidget            *progress_transcript_button;
  GtkWidget            *cancel_button;
};

G_DEFINE_FINAL_TYPE (OutboxComposeWindow, outbox_compose_window, ADW_TYPE_APPLICATION_WINDOW)

enum
{
  PROP_0,
  PROP_STORE,
  PROP_ACCOUNT,
  PROP_TRANSCRIPT_VISIBLE,
  N_PROPS
};

enum
{
  SENT,
  SEND_FAILED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint       signals[N_SIGNALS];

static void store_add_cb (GObject      *object,
                          GAsyncResult *result,
                          gpointer      user_data);
static void secrets_lookup_cb (GObject      *object,
                               GAsyncResult *result,
                               gpointer      user_data);
static void send_cb (GObject      *object,
                     GAsyncResult *result,
                     gpointer      user_data);
static void mark_sent_cb (GObject      *object,
                          GAsyncResult *result,
                          gpointer      user_data);

/* Helpers */

static gboolean
is_disposed (OutboxComposeWindow *self)
{
  return self->disposed;
}

static void
set_status_text (OutboxComposeWindow *self,
                 const char          *text)
{
  g_free (self->status_text);
  self->status_text = g_strdup (text);
}

static GtkEntry *
get_recipient_entry (OutboxComposeWindow *self,
                     RecipientField       field)
{
  switch (field)
    {
    case FIELD_TO:
      return self->to_entry;
    case FIELD_CC:
      return self->cc_entry;
    case FIELD_BCC:
      return self->bcc_entry;
    case N_RECIPIENT_FIELDS:
    default:
      g_assert_not_reached ();
    }
}

static GtkLabel *
get_recipient_error_label (OutboxComposeWindow *self,
                           RecipientField       field)
{
  switch (field)
    {
    case FIELD_TO:
      return self->to_error;
    case FIELD_CC:
      return self->cc_error;
    case FIELD_BCC:
      return self->bcc_error;
    case N_RECIPIENT_FIELDS:
    default:
      g_assert_not_reached ();
    }
}

static const char *
get_recipient_field_name (RecipientField field)
{
  switch (field)
    {
    case FIELD_TO:
      return C_("recipient field", "To");
    case FIELD_CC:
      return C_("recipient field", "Cc");
    case FIELD_BCC:
      return C_("recipient field", "Bcc");
    case N_RECIPIENT_FIELDS:
    default:
      g_assert_not_reached ();
    }
}

static char *
dup_body_text (OutboxComposeWindow *self)
{
  GtkTextBuffer *buffer = gtk_text_view_get_buffer (self->body_view);
  GtkTextIter    start, end;

  gtk_text_buffer_get_bounds (buffer, &start, &end);

  return gtk_text_buffer_get_text (buffer, &start, &end, FALSE);
}

static gboolean
has_text (OutboxComposeWindow *self)
{
  g_autofree char *body = NULL;

  for (guint i = 0; i < N_RECIPIENT_FIELDS; i++)
    {
      const char *text = gtk_editable_get_text (GTK_EDITABLE (get_recipient_entry (self, i)));

      if (text[0] != '\0')
        return TRUE;
    }

  if (gtk_editable_get_text (GTK_EDITABLE (self->subject_entry))[0] != '\0')
    return TRUE;

  body = dup_body_text (self);
  g_strstrip (body);

  return body[0] != '\0';
}

static void
set_field_error (OutboxComposeWindow *self,
                 RecipientField       field,
                 const char          *message)
{
  GtkWidget *entry = GTK_WIDGET (get_recipient_entry (self, field));
  GtkLabel  *label = get_recipient_error_label (self, field);

  if (message != NULL)
    {
      gtk_widget_add_css_class (entry, "error");
      gtk_label_set_text (label, message);
      gtk_widget_set_visible (GTK_WIDGET (label), TRUE);
      gtk_accessible_update_state (GTK_ACCESSIBLE (entry), GTK_ACCESSIBLE_STATE_INVALID,
                                   GTK_ACCESSIBLE_INVALID_TRUE, -1);
    }
  else
    {
      gtk_widget_remove_css_class (entry, "error");
      gtk_label_set_text (label, "");
      gtk_widget_set_visible (GTK_WIDGET (label), FALSE);
      gtk_accessible_reset_state (GTK_ACCESSIBLE (entry), GTK_ACCESSIBLE_STATE_INVALID);
    }
}

/* Checks one recipient field and marks it. Returns FALSE and sets
 * @message (if given) when the field is invalid. */
static gboolean
validate_field (OutboxComposeWindow *self,
                RecipientField       field,
                guint               *n_addresses,
                char               **message)
{
  GtkEntry   *entry = get_recipient_entry (self, field);
  const char *text = gtk_editable_get_text (GTK_EDITABLE (entry));
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) addresses = NULL;
  InternetAddressList *list;

  list = outbox_address_list_parse (text, &addresses, &error);

  if (list == NULL)
    {
      set_field_error (self, field, error->message);
      /* Translators: a recipient field ("To") and what is wrong with it */
      if (message != NULL)
        *message = g_strdup_printf (_("%s: %s"), get_recipient_field_name (field), error->message);
      return FALSE;
    }

  g_object_unref (list);
  set_field_error (self, field, NULL);

  if (n_addresses != NULL)
    *n_addresses = addresses != NULL ? g_strv_length (addresses) : 0;

  return TRUE;
}

static void
update_title (OutboxComposeWindow *self)
{
  const char      *subject = gtk_editable_get_text (GTK_EDITABLE (self->subject_entry));
  g_autofree char *stripped = g_strstrip (g_strdup (subject));
  const char      *title = stripped[0] != '\0' ? stripped : _("New Message");

  adw_window_title_set_title (self->window_title, title);
  gtk_window_set_title (GTK_WINDOW (self), title);
}

static void
update_from (OutboxComposeWindow *self)
{
  g_autofree char *from = NULL;

  if (self->account != NULL)
    from = outbox_account_format_from (self->account);

  if (from == NULL || from[0] == '\0')
    {
      g_free (from);
      from = g_strdup (_("No account set up"));
    }

  gtk_label_set_text (self->from_label, from);
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->from_label), from);
}

static void
outbox_compose_window_update_actions (OutboxComposeWindow *self)
{
  GtkWidget *widget = GTK_WIDGET (self);

  gboolean idle = !self->sending && !self->marking_sent && self->close_source == 0;

  gtk_widget_action_set_enabled (widget, "compose.send", idle);
  gtk_widget_action_set_enabled (widget, "compose.cancel",
                                 self->sending && !self->cancel_requested);
  gtk_widget_action_set_enabled (widget, "compose.send-again", idle && self->delivery_unknown);
  gtk_widget_action_set_enabled (widget, "compose.mark-sent", idle && self->delivery_unknown);
}

static void
set_fields_sensitive (OutboxComposeWindow *self,
                      gboolean             sensitive)
{
  gtk_widget_set_sensitive (GTK_WIDGET (self->header_grid), sensitive);
  gtk_text_view_set_editable (self->body_view, sensitive);
  gtk_text_view_set_cursor_visible (self->body_view, sensitive);
}

static gboolean
get_transcript_visible (OutboxComposeWindow *self)
{
  /* The action asks while the template is being built or torn down. */
  return self->transcript_view != NULL &&
         gtk_widget_get_visible (GTK_WIDGET (self->transcript_view));
}

static void
set_transcript_visible (OutboxComposeWindow *self,
                        gboolean             visible)
{
  GtkWidget *pane = GTK_WIDGET (self->transcript_view);
  int        height;

  if (self->transcript_view == NULL || visible == get_transcript_visible (self))
    return;

  if (!visible)
    {
      /* Shown again, it comes back at the size the user left it. */
      if (gtk_widget_get_height (pane) > 0)
        self->transcript_height = gtk_widget_get_height (pane);
      gtk_widget_set_visible (pane, FALSE);
      return;
    }

  gtk_widget_set_visible (pane, TRUE);

  /* The pane takes its height from the body, never from the window. */
  height = gtk_widget_get_height (GTK_WIDGET (self->body_paned));
  if (height > 0)
    {
      int pane_height = MIN (self->transcript_height, height - BODY_MIN_HEIGHT);

      gtk_paned_set_position (self->body_paned, height - MAX (pane_height, TRANSCRIPT_MIN_HEIGHT));
    }
}

static void
hide_error (OutboxComposeWindow *self)
{
  g_clear_pointer (&self->server_text, g_free);
  gtk_revealer_set_reveal_child (self->error_revealer, FALSE);

  /* Dismissing the choice keeps the copy in the outbox, still marked as
   * delivery unknown: nothing is sent again by itself. */
  self->delivery_unknown = FALSE;
  outbox_compose_window_update_actions (self);
}

typedef enum
{
  MESSAGE_AREA_DEFAULT = 0,
  /* Offer Send Again and Mark as Sent. */
  MESSAGE_AREA_DELIVERY_UNKNOWN = 1 << 0,
  /* The note says what becomes of the message: not dimmed. */
  MESSAGE_AREA_NOTE_MATTERS = 1 << 1,
} MessageAreaFlags;

/* Shows the error area. Every text is shown literally. */
static void
show_message_area_full (OutboxComposeWindow *self,
                        gboolean             partial,
                        const char          *title,
                        const char          *server_text,
                        const char          *explanation,
                        const char          *suggestion,
                        const char          *note,
                        MessageAreaFlags     flags)
{
  self->delivery_unknown = (flags & MESSAGE_AREA_DELIVERY_UNKNOWN) != 0;
  outbox_compose_window_update_actions (self);

  gtk_widget_remove_css_class (self->error_box, partial ? "failure" : "partial");
  gtk_widget_add_css_class (self->error_box, partial ? "partial" : "failure");
  gtk_image_set_from_icon_name (self->error_icon,
                                partial ? "dialog-warning-symbolic" : "dialog-error-symbolic");
  gtk_widget_remove_css_class (GTK_WIDGET (self->error_icon), partial ? "error" : "warning");
  gtk_widget_add_css_class (GTK_WIDGET (self->error_icon), partial ? "warning" : "error");

  gtk_label_set_text (self->error_title, title);

#define SET_OPTIONAL_LABEL(label, text)                                            \
  G_STMT_START                                                                     \
  {                                                                                \
    gtk_label_set_text ((label), (text) != NULL ? (text) : "");                    \
    gtk_widget_set_visible (GTK_WIDGET (label), (text) != NULL && (text)[0] != 0); \
  }                                                                                \
  G_STMT_END

  SET_OPTIONAL_LABEL (self->error_server_text, server_text);
  gtk_widget_set_visible (self->error_server_scroller,
                          gtk_widget_get_visible (GTK_WIDGET (self->error_server_text)));
  SET_OPTIONAL_LABEL (self->error_explanation, explanation);
  SET_OPTIONAL_LABEL (self->error_suggestion, suggestion);
  SET_OPTIONAL_LABEL (self->error_note, note);

#undef SET_OPTIONAL_LABEL

  if (flags & MESSAGE_AREA_NOTE_MATTERS)
    gtk_widget_remove_css_class (GTK_WIDGET (self->error_note), "dim-label");
  else
    gtk_widget_add_css_class (GTK_WIDGET (self->error_note), "dim-label");

  /* The transcript of what just failed, and the delivery-unknown choice. */
  gtk_widget_set_visible (self->error_transcript_button,
                          outbox_transcript_view_get_n_lines (self->transcript_view) > 0);
  gtk_widget_set_visible (self->delivery_unknown_actions, self->delivery_unknown);
  gtk_widget_set_visible (self->error_actions,
                          gtk_widget_get_visible (self->error_transcript_button) ||
                            self->delivery_unknown);

  g_free (self->server_text);
  self->server_text = NULL;
  if (server_text != NULL && server_text[0] != '\0')
    self->server_text = g_strdup (server_text);

  set_status_text (self, title);
  gtk_revealer_set_reveal_child (self->error_revealer, TRUE);
}

static void
show_message_area (OutboxComposeWindow *self,
                   gboolean             partial,
                   const char          *title,
                   const char          *server_text,
                   const char          *explanation,
                   const char          *suggestion,
                   const char          *note)
{
  show_message_area_full (self, partial, title, server_text, explanation, suggestion, note,
                          MESSAGE_AREA_DEFAULT);
}

static void
set_progress (OutboxComposeWindow *self,
              const char          *label,
              double               fraction)
{
  gtk_label_set_text (self->progress_label, label);
  set_status_text (self, label);

  if (fraction >= 0)
    gtk_progress_bar_set_fraction (self->progress_bar, CLAMP (fraction, 0.0, 1.0));
  else
    gtk_progress_bar_pulse (self->progress_bar);
}

/* How far along the whole session is at the start of @step. */
static double
step_fraction (OutboxSmtpStep step)
{
  if (step <= OUTBOX_SMTP_STEP_NONE)
    return 0.0;
  if (step < OUTBOX_SMTP_STEP_BODY)
    return 0.15 * (double) step / OUTBOX_SMTP_STEP_BODY;
  if (step == OUTBOX_SMTP_STEP_BODY)
    return 0.15;
  if (step == OUTBOX_SMTP_STEP_DATA_END)
    return 0.95;
  return 1.0;
}

static void
begin_sending (OutboxComposeWindow *self)
{
  GtkWidget *focus;

  g_clear_object (&self->cancellable);
  self->cancellable = g_cancellable_new ();
  self->sending = TRUE;
  self->cancel_requested = FALSE;
  self->sent = FALSE;
  self->step = OUTBOX_SMTP_STEP_NONE;

  hide_error (self);

  /* The transcript of the last attempt stays until now. */
  outbox_transcript_view_clear (self->transcript_view);

  gtk_stack_set_visible_child_name (self->progress_icon_stack, "spinner");
  gtk_widget_set_visible (self->cancel_button, TRUE);
  gtk_spinner_start (self->progress_spinner);
  gtk_progress_bar_set_fraction (self->progress_bar, 0.0);
  set_progress (self, _("Saving to the outbox…"), 0.0);
  gtk_revealer_set_reveal_child (self->progress_revealer, TRUE);
  outbox_compose_window_update_actions (self);

  /* Focus must not stay in a field about to turn insensitive; Cancel is
   * what can be done now. */
  focus = gtk_root_get_focus (GTK_ROOT (self));
  if (focus != NULL && gtk_widget_is_ancestor (focus, GTK_WIDGET (self->header_grid)))
    gtk_widget_grab_focus (self->cancel_button);
  set_fields_sensitive (self, FALSE);
}

static void
disconnect_client (OutboxComposeWindow *self)
{
  if (self->client != NULL)
    g_signal_handlers_disconnect_by_data (self->client, self);
  g_clear_object (&self->client);
}

/* Leaves the sending state; the progress area stays if @keep_progress. */
static void
end_sending (OutboxComposeWindow *self,
             gboolean             keep_progress)
{
  GtkWidget *focus;

  self->sending = FALSE;
  self->cancel_requested = FALSE;

  disconnect_client (self);
  g_clear_pointer (&self->message, g_bytes_unref);
  g_clear_pointer (&self->envelope, outbox_envelope_free);
  g_clear_object (&self->cancellable);

  if (is_disposed (self))
    return;

  gtk_spinner_stop (self->progress_spinner);
  set_fields_sensitive (self, TRUE);

  /* Give the focus back to the text, not to a button about to hide. */
  focus = gtk_root_get_focus (GTK_ROOT (self));
  if (!keep_progress && focus != NULL &&
      gtk_widget_is_ancestor (focus, GTK_WIDGET (self->progress_revealer)))
    gtk_widget_grab_focus (GTK_WIDGET (self->body_view));
  else if (focus == self->cancel_button)
    gtk_widget_grab_focus (GTK_WIDGET (self->body_view));

  if (!keep_progress)
    gtk_revealer_set_reveal_child (self->progress_revealer, FALSE);

  outbox_compose_window_update_actions (self);
}

/* @note: (nullable): what became of the message, whether the failure is
 * temporary or for good; NULL for the usual "nothing is lost". */
static void
fail_sending (OutboxComposeWindow *self,
              const char          *title,
              const char          *server_text,
              const char          *explanation,
              const char          *suggestion,
              const char          *note)
{
  MessageAreaFlags flags = note != NULL ? MESSAGE_AREA_NOTE_MATTERS : MESSAGE_AREA_DEFAULT;

  if (note == NULL && self->outbox_id != NULL)
    note = _("Nothing is lost: the message is kept in the outbox, and everything you wrote "
             "is still here.");

  end_sending (self, FALSE);
  show_message_area_full (self, FALSE, title, server_text, explanation, suggestion, note, flags);
  g_signal_emit (self, signals[SEND_FAILED], 0);
}

static void
fail_sending_with_error (OutboxComposeWindow *self,
                         const char          *title,
                         const GError        *error,
                         const char          *suggestion)
{
  fail_sending (self, title, NULL, error->message, suggestion, NULL);
}

/* The whole message went out, but the server's answer never came: the
 * connection dropped, the answer timed out or the user stopped waiting.
 * The sender has recorded the copy as delivery unknown; only the user
 * decides whether it goes again. @detail says what happened. */
static void
show_delivery_unknown (OutboxComposeWindow *self,
                       const char          *detail)
{
  const char      *title = _("Delivery unknown: the server did not confirm the message");
  g_autofree char *sentence = NULL;
  g_autofree char *explanation = NULL;
  const char      *suggestion;
  const char      *note;
  const char      *last;

  end_sending (self, FALSE);

  if (is_disposed (self))
    return;

  /* The engine's words may end with a GIO message and no full stop. */
  sentence = g_strstrip (g_strdup (detail));
  last = sentence[0] != '\0' ? g_utf8_prev_char (sentence + strlen (sentence)) : NULL;
  if (last != NULL && strchr (".!?", *last) == NULL && !g_str_equal (last, "…"))
    {
      char *stopped = g_strconcat (sentence, ".", NULL);

      g_free (sentence);
      sentence = stopped;
    }

  /* clang-format off */
  /* Translators: %s says what happened, e.g. "The server closed the
   * connection before confirming the message." */
  explanation = g_strdup_printf (_("%s The whole message had reached the server, so it may or "
                                   "may not have been delivered."),
                                 sentence);
  /* clang-format on */
  suggestion = _("Ask a recipient, or look in the sent folder of your provider’s web mail. If "
                 "the message did not arrive, choose Send Again to send a new copy; if it did, "
                 "choose Mark as Sent.");
  note = _("Outbox will not send it again by itself. Until you choose, the message is kept in "
           "the outbox and everything you wrote is still here.");

  show_message_area_full (self, TRUE, title, NULL, explanation, suggestion, note,
                          MESSAGE_AREA_DELIVERY_UNKNOWN | MESSAGE_AREA_NOTE_MATTERS);
  g_signal_emit (self, signals[SEND_FAILED], 0);
}

static void
cancelled_sending (OutboxComposeWindow *self)
{
  const char *message;

  end_sending (self, FALSE);

  if (is_disposed (self))
    return;

  if (self->step == OUTBOX_SMTP_STEP_DATA_END)
    {
      /* The whole message was out; only the server's answer is missing.
       * (The engine reports this as delivery unknown itself; this is in
       * case a cancellation comes through as such.) */
      show_delivery_unknown (self, _("Sending was stopped before the server confirmed the "
                                     "message."));
      return;
    }

  set_status_text (self, _("Sending cancelled"));

  if (self->outbox_id != NULL)
    message = _("Sending cancelled. The message is kept in the outbox.");
  else
    message = _("Sending cancelled");

  adw_toast_overlay_add_toast (self->toast_overlay, adw_toast_new (message));
}

static char *
format_rejections (GPtrArray *rejected)
{
  g_autoptr (GString) text = g_string_new (NULL);

  for (guint i = 0; i < rejected->len; i++)
    {
      const OutboxSmtpRejection *rejection = g_ptr_array_index (rejected, i);
      g_autofree char           *reply = NULL;

      if (rejection->reply != NULL)
        reply = outbox_smtp_reply_to_string (rejection->reply);

      if (text->len > 0)
        g_string_append_c (text, '\n');
      g_string_append (text, rejection->address);
      if (reply != NULL)
        {
          g_string_append (text, ": ");
          g_string_append (text, reply);
        }
    }

  return g_string_free (g_steal_pointer (&text), FALSE);
}

static gboolean
close_after_sent_cb (gpointer user_data)
{
  OutboxComposeWindow *self = user_data;

  self->close_source = 0;
  gtk_window_close (GTK_WINDOW (self));

  return G_SOURCE_REMOVE;
}

/* After a send: "Sent" stays on screen a moment, then the window closes. */
static void
close_soon (OutboxComposeWindow *self)
{
  if (self->close_source == 0)
    self->close_source = g_timeout_add_full (G_PRIORITY_DEFAULT, CLOSE_AFTER_SENT_MS,
                                             close_after_sent_cb, g_object_ref (self),
                                             g_object_unref);

  outbox_compose_window_update_actions (self);
}

static void
start_send (OutboxComposeWindow *self)
{
  g_autoptr (OutboxDraft) draft = NULL;
  g_autoptr (OutboxEnvelope) envelope = NULL;
  GMimeMessage *message;
  g_autoptr (GError) error = NULL;
  g_autofree char *first_problem = NULL;
  GtkWidget       *first_invalid = NULL;
  guint            n_recipients = 0;

  g_assert (OUTBOX_IS_COMPOSE_WINDOW (self));

  if (self->sending)
    return;

  /* Check every field, so that every problem is marked at once. */
  for (guint i = 0; i < N_RECIPIENT_FIELDS; i++)
    {
      g_autofree char *problem = NULL;
      guint            n = 0;

      if (validate_field (self, i, &n, &problem))
        {
          n_recipients += n;
        }
      else if (first_invalid == NULL)
        {
          first_invalid = GTK_WIDGET (get_recipient_entry (self, i));
          first_problem = g_steal_pointer (&problem);
        }
    }

  if (first_invalid == NULL && n_recipients == 0)
    {
      const char *problem = _("Add at least one recipient.");

      set_field_error (self, FIELD_TO, problem);
      first_invalid = GTK_WIDGET (self->to_entry);
      /* Translators: a recipient field ("To") and what is wrong with it */
      first_problem = g_strdup_printf (_("%s: %s"), get_recipient_field_name (FIELD_TO), problem);
    }

  if (first_invalid != NULL)
    {
      set_status_text (self, first_problem);
      /* Selecting the text would let the next key wipe the field. */
      gtk_entry_grab_focus_without_selecting (GTK_ENTRY (first_invalid));
      adw_toast_overlay_add_toast (self->toast_overlay,
                                   adw_toast_new (_("Check the marked recipients before sending")));
      return;
    }

  if (self->account == NULL || !outbox_account_is_complete (self->account))
    {
      const char *title = _("Set up your account before sending");
      const char *explanation = _("Outbox needs your email address and your provider’s "
                                  "outgoing server.");
      const char *suggestion = _("Open Account Settings from the main menu.");

      set_status_text (self, title);
      show_message_area (self, FALSE, title, NULL, explanation, suggestion, NULL);
      gtk_widget_activate_action (GTK_WIDGET (self), "app.preferences", NULL);
      return;
    }

  if (self->store == NULL)
    {
      g_critical ("OutboxComposeWindow has no store");
      return;
    }

  draft = outbox_compose_window_get_draft (self);
  message = outbox_message_build (draft, &envelope, &error);

  if (message == NULL)
    {
      const char *title = _("The message could not be prepared");

      show_message_area (self, FALSE, title, NULL, error->message, NULL, NULL);
      g_signal_emit (self, signals[SEND_FAILED], 0);
      return;
    }

  begin_sending (self);

  self->message = outbox_message_to_bytes (message);
  g_object_unref (message);
  self->message_size = g_bytes_get_size (self->message);
  self->envelope = g_steal_pointer (&envelope);
  /* A new copy goes into the outbox on every attempt. */
  g_clear_pointer (&self->outbox_id, g_free);

  outbox_store_add_async (self->store, OUTBOX_FOLDER_OUTBOX, self->message, self->envelope,
                          outbox_account_get_id (self->account), self->cancellable, store_add_cb,
                          g_object_ref (self));
}

/* Callbacks */

static void
store_add_cb (GObject      *object,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr (OutboxComposeWindow) self = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *host = NULL;
  g_autofree char *username = NULL;
  char            *id;

  id = outbox_store_add_finish (OUTBOX_STORE (object), result, &error);

  if (id == NULL)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        cancelled_sending (self);
      else if (!is_disposed (self))
        fail_sending_with_error (self, TITLE_STORE_FAILED, error, SUGGEST_CHECK_DISK);
      return;
    }

  g_free (self->outbox_id);
  self->outbox_id = id;

  if (is_disposed (self) || g_cancellable_is_cancelled (self->cancellable))
    {
      cancelled_sending (self);
      return;
    }

  host = outbox_account_dup_host (self->account);
  username = outbox_account_dup_username (self->account);

  set_progress (self, _("Looking up your password…"), 0.0);

  outbox_secrets_lookup_async (host, outbox_account_get_port (self->account), username,
                               self->cancellable, secrets_lookup_cb, g_object_ref (self));
}

static void
on_client_step_changed_cb (OutboxSmtpClient    *client,
                           guint                step,
                           OutboxComposeWindow *self)
{
  const char *label;

  g_assert (OUTBOX_IS_COMPOSE_WINDOW (self));

  if (!self->sending || self->cancel_requested)
    return;

  self->step = step;
  label = outbox_smtp_step_progress_label (step);

  if (label != NULL && label[0] != '\0')
    set_progress (self, label, step_fraction (step));
  else
    gtk_progress_bar_set_fraction (self->progress_bar, step_fraction (step));
}

static void
on_client_progress_cb (OutboxSmtpClient    *client,
                       guint64              sent,
                       guint64              total,
                       OutboxComposeWindow *self)
{
  double fraction;

  g_assert (OUTBOX_IS_COMPOSE_WINDOW (self));

  if (!self->sending || self->cancel_requested || total == 0)
    return;

  fraction = MIN (1.0, (double) sent / (double) total);
  gtk_progress_bar_set_fraction (self->progress_bar, 0.15 + 0.8 * fraction);

  if (total >= LARGE_MESSAGE_BYTES)
    {
      g_autofree char *label = NULL;

      /* Translators: the first %s is the step, "Sending…"; %d%% a percentage, "42%" */
      label = g_strdup_printf (_("%s %d%%"),
                                  outbox_smtp_step_progress_label (OUTBOX_SMTP_STEP_BODY),
                                  (int) (fraction * 100));
      gtk_label_set_text (self->progress_label, label);
      set_status_text (self, label);
    }
}

static void
on_client_transcript_cb (OutboxSmtpClient    *client,
                         guint                kind,
                         const char          *line,
                         OutboxComposeWindow *self)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();

  g_assert (OUTBOX_IS_COMPOSE_WINDOW (self));

  if (is_disposed (self))
    return;

  /* The engine has made the line visible and redacted AUTH payloads. */
  outbox_transcript_view_append (self->transcript_view, kind, now, line);
}

static void
secrets_lookup_cb (GObject      *object,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr (OutboxComposeWindow) self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxSmtpClient) client = NULL;
  char *password;

  password = outbox_secrets_lookup_finish (result, &error);

  if (error != NULL)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        cancelled_sending (self);
      else if (!is_disposed (self))
        fail_sending_with_error (self, TITLE_KEYRING_FAILED, error, SUGGEST_UNLOCK_KEYRING);
      return;
    }

  if (is_disposed (self) || g_cancellable_is_cancelled (self->cancellable))
    {
      outbox_secrets_free (password);
      cancelled_sending (self);
      return;
    }

  /* No stored password is fine for a server without authentication. */
  client = outbox_account_create_client (self->account, password, &error);
  outbox_secrets_free (password);

  if (client == NULL)
    {
      const char *title = _("The account settings cannot be used");
      const char *suggestion = _("Check the settings in Account Settings.");

      fail_sending_with_error (self, title, error, suggestion);
      return;
    }

  self->client = g_object_ref (client);
  g_signal_connect (client, "step-changed", G_CALLBACK (on_client_step_changed_cb), self);
  g_signal_connect (client, "progress", G_CALLBACK (on_client_progress_cb), self);
  g_signal_connect (client, "transcript", G_CALLBACK (on_client_transcript_cb), self);

  set_progress (self, outbox_smtp_step_progress_label (OUTBOX_SMTP_STEP_CONNECT),
                step_fraction (OUTBOX_SMTP_STEP_CONNECT));

  outbox_sender_send_async (self->store, self->outbox_id, client, self->cancellable, send_cb,
                            g_object_ref (self));
}

static void
send_cb (GObject      *object,
         GAsyncResult *result,
         gpointer      user_data)
{
  g_autoptr (OutboxComposeWindow) self = user_data;
  g_autoptr (GPtrArray) rejected = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (OutboxSmtpClient) client = NULL;

  client = self->client != NULL ? g_object_ref (self->client) : NULL;

  if (!outbox_sender_send_finish (result, &rejected, &error))
    {
      const OutboxSmtpFailure *failure = NULL;
      g_autofree char         *title = NULL;
      g_autofree char         *server_text = NULL;
      g_autofree char         *explanation = NULL;
      g_autofree char         *suggestion = NULL;
      const char              *note = NULL;

      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          cancelled_sending (self);
          return;
        }

      if (is_disposed (self))
        {
          end_sending (self, FALSE);
          return;
        }

      if (client != NULL)
        failure = outbox_smtp_client_get_failure (client);

      g_debug ("Sending %s failed: %s", self->outbox_id, error->message);

      /* As the sender records it: never resent without the user's say. */
      if (g_error_matches (error, OUTBOX_SMTP_ERROR, OUTBOX_SMTP_ERROR_DELIVERY_UNKNOWN) ||
          (failure != NULL && failure->step == OUTBOX_SMTP_STEP_DATA_END &&
           failure->reply == NULL))
        {
          show_delivery_unknown (self, error->message);
          return;
        }

      if (failure != NULL)
        {
          title = outbox_smtp_failure_get_title (failure);
          server_text = outbox_smtp_failure_get_server_text (failure);
          explanation = outbox_smtp_failure_get_explanation (failure);
          suggestion = outbox_smtp_failure_get_suggestion (failure);

          /* The sender has kept the copy as failed, temporarily or for
           * good; say which, and what comes next. */
          if (outbox_smtp_failure_is_temporary (failure))
            note = _("This is a temporary problem. The message is kept queued in the outbox "
                     "to try again, and everything you wrote is still here.");
          else if (failure->reply != NULL && failure->reply->code / 100 == 5)
            note = _("This is a permanent error: sending the same message again will fail the "
                     "same way. Everything you wrote is kept here for you to edit, and a copy "
                     "stays in the outbox.");
        }
      else
        {
          title = g_strdup (_("The message could not be sent"));
          explanation = g_strdup (error->message);
        }

      fail_sending (self, title, server_text, explanation, suggestion, note);
      return;
    }

  self->sent = TRUE;
  end_sending (self, TRUE);

  if (is_disposed (self))
    {
      g_signal_emit (self, signals[SENT], 0);
      return;
    }

  gtk_stack_set_visible_child_name (self->progress_icon_stack, "done");
  set_progress (self, _("Sent"), 1.0);
  gtk_widget_set_visible (self->cancel_button, FALSE);

  if (rejected != NULL && rejected->len > 0)
    {
      g_autofree char *list = format_rejections (rejected);

      const char *title = ngettext ("Sent, but one recipient was refused",
                                    "Sent, but some recipients were refused", rejected->len);
      const char *explanation = _("The server accepted the message for the other recipients, "
                                  "but refused the ones listed above.");
      const char *suggestion = _("Check these addresses. If you correct them, send a new message "
                                 "to just those recipients.");

      show_message_area (self, TRUE, title, list, explanation, suggestion, NULL);
      g_signal_emit (self, signals[SENT], 0);
      return;
    }

  g_signal_emit (self, signals[SENT], 0);
  close_soon (self);
}

/* Marking as sent: the copy moves from outbox/ to sent/, recorded as sent,
 * in a worker thread. */
typedef struct
{
  OutboxStore *store;
  char        *id;
} MarkSentData;

static void
mark_sent_data_free (MarkSentData *data)
{
  g_clear_object (&data->store);
  g_clear_pointer (&data->id, g_free);
  g_free (data);
}

static void
mark_sent_thread (GTask        *task,
                  gpointer      source_object,
                  gpointer      task_data,
                  GCancellable *cancellable)
{
  MarkSentData *data = task_data;
  const char   *detail = _("Marked as sent by the user: the server had not confirmed it");
  g_autoptr (GError) error = NULL;

  if (!outbox_store_move_to_sent (data->store, data->id, OUTBOX_FOLDER_OUTBOX, detail, FALSE,
                                  &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }

  g_task_return_boolean (task, TRUE);
}

static void
mark_sent (OutboxComposeWindow *self)
{
  g_autoptr (GTask) task = NULL;
  MarkSentData *data;

  g_assert (OUTBOX_IS_COMPOSE_WINDOW (self));

  if (!self->delivery_unknown || self->marking_sent || self->sending || self->outbox_id == NULL)
    return;

  self->marking_sent = TRUE;
  outbox_compose_window_update_actions (self);

  data = g_new0 (MarkSentData, 1);
  data->store = g_object_ref (self->store);
  data->id = g_strdup (self->outbox_id);

  /* Not cancellable: once asked, the move happens even if the window
   * closes meanwhile. */
  task = g_task_new (self, NULL, mark_sent_cb, NULL);
  g_task_set_source_tag (task, mark_sent);
  g_task_set_task_data (task, data, (GDestroyNotify) mark_sent_data_free);
  g_task_run_in_thread (task, mark_sent_thread);
}

static void
mark_sent_cb (GObject      *object,
              GAsyncResult *result,
              gpointer      user_data)
{
  OutboxComposeWindow *self = OUTBOX_COMPOSE_WINDOW (object);
  g_autoptr (GError) error = NULL;

  self->marking_sent = FALSE;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      const char *title = _("The message could not be marked as sent");

      if (is_disposed (self))
        return;

      /* The choice stays open. */
      show_message_area_full (self, FALSE, title, NULL, error->message, SUGGEST_CHECK_DISK,
                              NULL, MESSAGE_AREA_DELIVERY_UNKNOWN);
      return;
    }

  self->sent = TRUE;

  if (is_disposed (self))
    {
      g_signal_emit (self, signals[SENT], 0);
      return;
    }

  hide_error (self);
  gtk_stack_set_visible_child_name (self->progress_icon_stack, "done");
  set_progress (self, _("Marked as sent"), 1.0);
  gtk_widget_set_visible (self->cancel_button, FALSE);
  gtk_revealer_set_reveal_child (self->progress_revealer, TRUE);

  g_signal_emit (self, signals[SENT], 0);
  close_soon (self);
}

static void
on_recipient_changed_cb (GtkEntry            *entry,
                         OutboxComposeWindow *self)
{
  g_assert (OUTBOX_IS_COMPOSE_WINDOW (self));

  self->sent = FALSE;

  /* Only clear a mark as the user types; new marks come on focus-out
   * or Send, not halfway through an address. */
  for (guint i = 0; i < N_RECIPIENT_FIELDS; i++)
    {
      if (get_recipient_entry (self, i) == entry &&
          gtk_widget_has_css_class (GTK_WIDGET (entry), "error"))
        validate_field (self, i, NULL, NULL);
    }
}

static void
on_recipient_focus_leave_cb (GtkEventControllerFocus *controller,
                             OutboxComposeWindow     *self)
{
  GtkWidget *entry = gtk_event_controller_get_widget (GTK_EVENT_CONTROLLER (controller));

  g_assert (OUTBOX_IS_COMPOSE_WINDOW (self));

  if (is_disposed (self) || self->sending)
    return;

  for (guint i = 0; i < N_RECIPIENT_FIELDS; i++)
    {
      if (GTK_WIDGET (get_recipient_entry (self, i)) == entry)
        validate_field (self, i, NULL, NULL);
    }
}

static void
on_field_changed_cb (OutboxComposeWindow *self)
{
  g_assert (OUTBOX_IS_COMPOSE_WINDOW (self));

  self->sent = FALSE;
  update_title (self);
}

static void
on_transcript_visible_cb (OutboxComposeWindow *self)
{
  g_assert (OUTBOX_IS_COMPOSE_WINDOW (self));

  /* The pane's own Hide button, or the action. */
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TRANSCRIPT_VISIBLE]);
}

static void
on_account_changed_cb (OutboxComposeWindow *self)
{
  g_assert (OUTBOX_IS_COMPOSE_WINDOW (self));

  if (!is_disposed (self))
    update_from (self);
}

static gboolean
close_after_discard_cb (gpointer user_data)
{
  OutboxComposeWindow *self = user_data;

  if (!self->disposed)
    gtk_window_close (GTK_WINDOW (self));

  return G_SOURCE_REMOVE;
}

static void
discard_response_cb (AdwMessageDialog    *dialog,
                     const char          *response,
                     OutboxComposeWindow *self)
{
  g_assert (OUTBOX_IS_COMPOSE_WINDOW (self));

  if (g_strcmp0 (response, "discard") != 0)
    return;

  self->discard_confirmed = TRUE;
  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);

  /* Close once the dialog has finished with its response: it is ours
   * and goes with us. */
  g_idle_add_full (G_PRIORITY_DEFAULT, close_after_discard_cb, g_object_ref (self), g_object_unref);
}

/* Actions */

static void
compose_send_action (GtkWidget  *widget,
                     const char *action_name,
                     GVariant   *param)
{
  start_send (OUTBOX_COMPOSE_WINDOW (widget));
}

static void
compose_cancel_action (GtkWidget  *widget,
                       const char *action_name,
                       GVariant   *param)
{
  OutboxComposeWindow *self = OUTBOX_COMPOSE_WINDOW (widget);

  if (!self->sending || self->cancellable == NULL)
    return;

  self->cancel_requested = TRUE;
  set_progress (self, _("Cancelling…"), -1);
  g_cancellable_cancel (self->cancellable);
  outbox_compose_window_update_actions (self);
}

static void
compose_dismiss_error_action (GtkWidget  *widget,
                              const char *action_name,
                              GVariant   *param)
{
  hide_error (OUTBOX_COMPOSE_WINDOW (widget));
}

static void
compose_send_again_action (GtkWidget  *widget,
                           const char *action_name,
                           GVariant   *param)
{
  OutboxComposeWindow *self = OUTBOX_COMPOSE_WINDOW (widget);

  if (!self->delivery_unknown)
    return;

  /* A fresh copy, as with Send; the unconfirmed one stays in the outbox,
   * still marked as delivery unknown. */
  start_send (self);
}

static void
compose_mark_sent_action (GtkWidget  *widget,
                          const char *action_name,
                          GVariant   *param)
{
  mark_sent (OUTBOX_COMPOSE_WINDOW (widget));
}

/* Vfuncs */

static void
save_window_size (OutboxComposeWindow *self)
{
  int width, height;

  if (self->settings == NULL || gtk_window_is_maximized (GTK_WINDOW (self)))
    return;

  gtk_window_get_default_size (GTK_WINDOW (self), &width, &height);
  if (width > 0 && height > 0)
    {
      g_settings_set_int (self->settings, "window-width", width);
      g_settings_set_int (self->settings, "window-height", height);
    }
}

static gboolean
outbox_compose_window_close_request (GtkWindow *window)
{
  OutboxComposeWindow *self = OUTBOX_COMPOSE_WINDOW (window);
  AdwMessageDialog    *dialog;
  const char          *heading;
  const char          *body;

  if (!self->discard_confirmed && (self->sending || (!self->sent && has_text (self))))
    {
      heading = _("Discard this message?");
      dialog = ADW_MESSAGE_DIALOG (adw_message_dialog_new (window, heading, NULL));

      if (self->sending)
        body = _("The message is still being sent. If you close the window, sending stops and "
                 "the message stays in the outbox.");
      else if (self->delivery_unknown)
        body = _("The server did not confirm it, so it may or may not have been sent. If you "
                 "close the window, what you wrote here is lost; the unconfirmed copy stays in "
                 "the outbox and is not sent again.");
      else
        body = _("It has not been sent. If you close the window, what you wrote here is lost.");

      adw_message_dialog_set_body (dialog, body);

      /* clang-format off */
      adw_message_dialog_add_responses (dialog,
                                        "cancel", _("_Cancel"),
                                        "discard", _("_Discard"),
                                        NULL);
      /* clang-format on */
      adw_message_dialog_set_response_appearance (dialog, "discard", ADW_RESPONSE_DESTRUCTIVE);
      adw_message_dialog_set_default_response (dialog, "cancel");
      adw_message_dialog_set_close_response (dialog, "cancel");
      g_signal_connect_object (dialog, "response", G_CALLBACK (discard_response_cb), self, 0);
      gtk_window_present (GTK_WINDOW (dialog));

      return TRUE;
    }

  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);

  save_window_size (self);

  return GTK_WINDOW_CLASS (outbox_compose_window_parent_class)->close_request (window);
}

static void
outbox_compose_window_constructed (GObject *object)
{
  OutboxComposeWindow *self = OUTBOX_COMPOSE_WINDOW (object);

  G_OBJECT_CLASS (outbox_compose_window_parent_class)->constructed (object);

  if (self->account != NULL)
    g_signal_connect_object (outbox_account_get_settings (self->account), "changed",
                             G_CALLBACK (on_account_changed_cb), self, G_CONNECT_SWAPPED);

  update_from (self);
  outbox_compose_window_update_actions (self);
}

static void
outbox_compose_window_dispose (GObject *object)
{
  OutboxComposeWindow *self = OUTBOX_COMPOSE_WINDOW (object);

  self->disposed = TRUE;

  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);

  g_clear_handle_id (&self->close_source, g_source_remove);
  disconnect_client (self);

  gtk_widget_dispose_template (GTK_WIDGET (self), OUTBOX_TYPE_COMPOSE_WINDOW);

  g_clear_object (&self->settings);

  G_OBJECT_CLASS (outbox_compose_window_parent_class)->dispose (object);
}

static void
outbox_compose_window_finalize (GObject *object)
{
  OutboxComposeWindow *self = OUTBOX_COMPOSE_WINDOW (object);

  g_clear_object (&self->cancellable);
  g_clear_object (&self->store);
  g_clear_object (&self->account);
  g_clear_pointer (&self->message, g_bytes_unref);
  g_clear_pointer (&self->envelope, outbox_envelope_free);
  g_clear_pointer (&self->outbox_id, g_free);
  g_clear_pointer (&self->status_text, g_free);
  g_clear_pointer (&self->server_text, g_free);

  G_OBJECT_CLASS (outbox_compose_window_parent_class)->finalize (object);
}

static void
outbox_compose_window_get_property (GObject    *object,
                                    guint       prop_id,
                                    GValue     *value,
                                    GParamSpec *pspec)
{
  OutboxComposeWindow *self = OUTBOX_COMPOSE_WINDOW (object);

  switch (prop_id)
    {
    case PROP_STORE:
      g_value_set_object (value, self->store);
      break;

    case PROP_ACCOUNT:
      g_value_set_object (value, self->account);
      break;

    case PROP_TRANSCRIPT_VISIBLE:
      g_value_set_boolean (value, get_transcript_visible (self));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
outbox_compose_window_set_property (GObject      *object,
                                    guint         prop_id,
                                    const GValue *value,
                                    GParamSpec   *pspec)
{
  OutboxComposeWindow *self = OUTBOX_COMPOSE_WINDOW (object);

  switch (prop_id)
    {
    case PROP_STORE:
      self->store = g_value_dup_object (value);
      break;

    case PROP_ACCOUNT:
      self->account = g_value_dup_object (value);
      break;

    case PROP_TRANSCRIPT_VISIBLE:
      set_transcript_visible (self, g_value_get_boolean (value));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
outbox_compose_window_class_init (OutboxComposeWindowClass *klass)
{
  GObjectClass   *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  GtkWindowClass *window_class = GTK_WINDOW_CLASS (klass);

  object_class->constructed = outbox_compose_window_constructed;
  object_class->dispose = outbox_compose_window_dispose;
  object_class->finalize = outbox_compose_window_finalize;
  object_class->get_property = outbox_compose_window_get_property;
  object_class->set_property = outbox_compose_window_set_property;

  window_class->close_request = outbox_compose_window_close_request;

  properties[PROP_STORE] =
    g_param_spec_object ("store", NULL, NULL, OUTBOX_TYPE_STORE,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  properties[PROP_ACCOUNT] =
    g_param_spec_object ("account", NULL, NULL, OUTBOX_TYPE_ACCOUNT,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  /* Whether the transcript pane is open. */
  properties[PROP_TRANSCRIPT_VISIBLE] =
    g_param_spec_boolean ("transcript-visible", NULL, NULL, FALSE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  signals[SENT] =
    g_signal_new ("sent", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 0);
  signals[SEND_FAILED] =
    g_signal_new ("send-failed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                  NULL, G_TYPE_NONE, 0);

  g_type_ensure (OUTBOX_TYPE_TRANSCRIPT_VIEW);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/outbox/Outbox/outbox-compose-window.ui");
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, toast_overlay);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, window_title);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, from_label);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, header_grid);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, to_entry);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, cc_entry);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, bcc_entry);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, to_error);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, cc_error);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, bcc_error);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, subject_entry);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, body_view);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, error_revealer);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, error_box);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, error_icon);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, error_title);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, error_server_text);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, error_server_scroller);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, error_explanation);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, error_suggestion);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, error_note);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, error_actions);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, error_transcript_button);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, delivery_unknown_actions);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, mark_sent_button);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, send_again_button);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, body_paned);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, transcript_view);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, progress_revealer);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, progress_icon_stack);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, progress_spinner);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, progress_label);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, progress_bar);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, progress_transcript_button);
  gtk_widget_class_bind_template_child (widget_class, OutboxComposeWindow, cancel_button);
  gtk_widget_class_bind_template_callback (widget_class, on_recipient_changed_cb);
  gtk_widget_class_bind_template_callback (widget_class, on_field_changed_cb);

  gtk_widget_class_install_action (widget_class, "compose.send", NULL, compose_send_action);
  gtk_widget_class_install_action (widget_class, "compose.cancel", NULL, compose_cancel_action);
  gtk_widget_class_install_action (widget_class, "compose.dismiss-error", NULL,
                                   compose_dismiss_error_action);
  gtk_widget_class_install_action (widget_class, "compose.send-again", NULL,
                                   compose_send_again_action);
  gtk_widget_class_install_action (widget_class, "compose.mark-sent", NULL,
                                   compose_mark_sent_action);
  gtk_widget_class_install_property_action (widget_class, "compose.show-transcript",
                                            "transcript-visible");

  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Return, GDK_CONTROL_MASK,
                                       "compose.send", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_KP_Enter, GDK_CONTROL_MASK,
                                       "compose.send", NULL);
}

static void
outbox_compose_window_init (OutboxComposeWindow *self)
{
  static const guint  send_keys[] = { GDK_KEY_Return, GDK_KEY_KP_Enter, GDK_KEY_ISO_Enter };
  GtkEventController *shortcuts;
  GtkEntry           *entries[] = { NULL, NULL, NULL };

  gtk_widget_init_template (GTK_WIDGET (self));

  self->transcript_height = TRANSCRIPT_HEIGHT;
  g_signal_connect_object (self->transcript_view, "notify::visible",
                           G_CALLBACK (on_transcript_visible_cb), self, G_CONNECT_SWAPPED);

  entries[0] = self->to_entry;
  entries[1] = self->cc_entry;
  entries[2] = self->bcc_entry;

  for (guint i = 0; i < G_N_ELEMENTS (entries); i++)
    {
      GtkEventController *focus = gtk_event_controller_focus_new ();

      g_signal_connect (focus, "leave", G_CALLBACK (on_recipient_focus_leave_cb), self);
      gtk_widget_add_controller (GTK_WIDGET (entries[i]), focus);
    }

  /* GtkTextView takes Ctrl+Return for itself before the class bindings
   * see it, so the send shortcut also runs in the capture phase. */
  shortcuts = gtk_shortcut_controller_new ();
  gtk_event_controller_set_propagation_phase (shortcuts, GTK_PHASE_CAPTURE);
  for (guint i = 0; i < G_N_ELEMENTS (send_keys); i++)
    {
      GtkShortcutTrigger *trigger = gtk_keyval_trigger_new (send_keys[i], GDK_CONTROL_MASK);
      GtkShortcutAction  *action = gtk_named_action_new ("compose.send");

      gtk_shortcut_controller_add_shortcut (GTK_SHORTCUT_CONTROLLER (shortcuts),
                                            gtk_shortcut_new (trigger, action));
    }
  gtk_widget_add_controller (GTK_WIDGET (self), shortcuts);

  self->settings = g_settings_new (APP_ID);
  gtk_window_set_default_size (GTK_WINDOW (self),
                               g_settings_get_int (self->settings, "window-width"),
                               g_settings_get_int (self->settings, "window-height"));

  gtk_widget_grab_focus (GTK_WIDGET (self->to_entry));
}

/* Public API */

OutboxComposeWindow *
outbox_compose_window_new (OutboxApplication *app,
                           OutboxStore       *store,
                           OutboxAccount     *account)
{
  g_return_val_if_fail (app == NULL || OUTBOX_IS_APPLICATION (app), NULL);
  g_return_val_if_fail (OUTBOX_IS_STORE (store), NULL);
  g_return_val_if_fail (account == NULL || OUTBOX_IS_ACCOUNT (account), NULL);

  return g_object_new (OUTBOX_TYPE_COMPOSE_WINDOW,
                       "application", app,
                       "store", store,
                       "account", account,
                       NULL);
}

OutboxAccount *
outbox_compose_window_get_account (OutboxComposeWindow *self)
{
  g_return_val_if_fail (OUTBOX_IS_COMPOSE_WINDOW (self), NULL);

  return self->account;
}

OutboxStore *
outbox_compose_window_get_store (OutboxComposeWindow *self)
{
  g_return_val_if_fail (OUTBOX_IS_COMPOSE_WINDOW (self), NULL);

  return self->store;
}

void
outbox_compose_window_set_draft (OutboxComposeWindow *self,
                                 const OutboxDraft   *draft)
{
  g_return_if_fail (OUTBOX_IS_COMPOSE_WINDOW (self));
  g_return_if_fail (draft != NULL);

  gtk_editable_set_text (GTK_EDITABLE (self->to_entry), draft->to != NULL ? draft->to : "");
  gtk_editable_set_text (GTK_EDITABLE (self->cc_entry), draft->cc != NULL ? draft->cc : "");
  gtk_editable_set_text (GTK_EDITABLE (self->bcc_entry), draft->bcc != NULL ? draft->bcc : "");
  gtk_editable_set_text (GTK_EDITABLE (self->subject_entry),
                         draft->subject != NULL ? draft->subject : "");
  gtk_text_buffer_set_text (gtk_text_view_get_buffer (self->body_view),
                            draft->body != NULL ? draft->body : "",
                            -1);

  for (guint i = 0; i < N_RECIPIENT_FIELDS; i++)
    set_field_error (self, i, NULL);
}

OutboxDraft *
outbox_compose_window_get_draft (OutboxComposeWindow *self)
{
  OutboxDraft *draft;

  g_return_val_if_fail (OUTBOX_IS_COMPOSE_WINDOW (self), NULL);

  draft = outbox_draft_new ();

  if (self->account != NULL)
    {
      draft->from_name = outbox_account_dup_display_name (self->account);
      draft->from_address = outbox_account_dup_address (self->account);
    }

  draft->to = g_strdup (gtk_editable_get_text (GTK_EDITABLE (self->to_entry)));
  draft->cc = g_strdup (gtk_editable_get_text (GTK_EDITABLE (self->cc_entry)));
  draft->bcc = g_strdup (gtk_editable_get_text (GTK_EDITABLE (self->bcc_entry)));
  draft->subject = g_strdup (gtk_editable_get_text (GTK_EDITABLE (self->subject_entry)));
  draft->body = dup_body_text (self);

  return draft;
}

void
outbox_compose_window_send (OutboxComposeWindow *self)
{
  g_return_if_fail (OUTBOX_IS_COMPOSE_WINDOW (self));

  gtk_widget_activate_action (GTK_WIDGET (self), "compose.send", NULL);
}

gboolean
outbox_compose_window_is_sending (OutboxComposeWindow *self)
{
  g_return_val_if_fail (OUTBOX_IS_COMPOSE_WINDOW (self), FALSE);

  return self->sending;
}

const char *
outbox_compose_window_get_status_text (OutboxComposeWindow *self)
{
  g_return_val_if_fail (OUTBOX_IS_COMPOSE_WINDOW (self), NULL);

  return self->status_text;
}

const char *
outbox_compose_window_get_error_server_text (OutboxComposeWindow *self)
{
  g_return_val_if_fail (OUTBOX_IS_COMPOSE_WINDOW (self), NULL);

  return self->server_text;
}

const char *
outbox_compose_window_get_outbox_id (OutboxComposeWindow *self)
{
  g_return_val_if_fail (OUTBOX_IS_COMPOSE_WINDOW (self), NULL);

  return self->outbox_id;
}

gboolean
outbox_compose_window_get_transcript_visible (OutboxComposeWindow *self)
{
  g_return_val_if_fail (OUTBOX_IS_COMPOSE_WINDOW (self), FALSE);

  return get_transcript_visible (self);
}

void
outbox_compose_window_set_transcript_visible (OutboxComposeWindow *self,
                                              gboolean             visible)
{
  g_return_if_fail (OUTBOX_IS_COMPOSE_WINDOW (self));

  set_transcript_visible (self, visible);
}
