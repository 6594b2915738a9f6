/*
 * ext.c - the registry of extensions (ext.h): the list of compiled-in
 * extensions, which is the only place that names them, and the hook
 * arrays the core walks.
 * Failure policy: a descriptor naming an unknown setting or schema step
 * stops the worker at start-up (ext_init), with one line in the log.
 */
#include "ext.h"
#include "config.h"
#include "log.h"
#include "xml.h"
#include "../db/db.h"

#include <string.h>

extern const struct ext roster_ext, vcard_ext, private_ext, blocking_ext,
	offline_ext, sm_ext;
extern const struct ext mam_ext;
extern const struct ext carbons_ext, csi_ext;
extern const struct ext pep_ext;
extern const struct ext caps_ext;
extern const struct ext pep_compat_ext;
extern const struct ext pep_remote_ext;
extern const struct ext muc_ext;

/* The compiled-in extensions.  The order is the order of their disco
 * features and stream features and the order in which hooks run. */
const struct ext *const ext_all[] = {
	&roster_ext,
	&vcard_ext,
	&private_ext,
	&blocking_ext,
	&offline_ext,
	&sm_ext,
	&mam_ext,
	&carbons_ext,
	&csi_ext,
	&pep_ext,
	&caps_ext,
	&pep_compat_ext,
	&pep_remote_ext,
	&muc_ext,
};
const unsigned ext_count = sizeof(ext_all) / sizeof(ext_all[0]);

_Static_assert(sizeof(ext_all) / sizeof(ext_all[0]) <= EXT_MAX,
	       "more extensions than EXT_MAX");

struct ext_hooks ext_hooks;

static int ext_schema_known(const char *name)
{
	for (unsigned i = 0; i < db_schema_steps_count; i++)
		if (strcmp(db_schema_steps[i].name, name) == 0)
			return 1;
	return 0;
}

#define EXT_ADD(h) do { \
	if (e->h != NULL) \
		ext_hooks.h[ext_hooks.n_##h++] = \
			(struct ext_hook){ e, (uint32_t)1 << i }; \
} while (0)

int ext_init(const char **error_r)
{
	memset(&ext_hooks, 0, sizeof(ext_hooks));
	for (unsigned i = 0; i < ext_count; i++) {
		const struct ext *e = ext_all[i];
		for (const char *const *k = e->config_keys; k && *k; k++) {
			if (config_find(*k) == NULL) {
				log_error("extension %s: setting %s is not "
					  "in the settings table", e->name, *k);
				*error_r = "extension names an unknown setting";
				return -1;
			}
		}
		for (const char *const *s = e->schema; s && *s; s++) {
			if (!ext_schema_known(*s)) {
				log_error("extension %s: schema step %s is not "
					  "compiled in", e->name, *s);
				*error_r = "extension names an unknown schema "
					   "step";
				return -1;
			}
		}
		if (e->nonza_ns != NULL && e->nonza_ns[0] != NULL &&
		    e->nonza == NULL) {
			log_error("extension %s: nonza namespaces without a "
				  "nonza hook", e->name);
			*error_r = "extension takes nonzas without a hook";
			return -1;
		}
		EXT_ADD(stream_features);
		EXT_ADD(session_bound);
		EXT_ADD(presence_changed);
		EXT_ADD(iq_result_to_account);
		EXT_ADD(caps_changed);
		EXT_ADD(stanza_in);
		EXT_ADD(stanza_out_node);
		EXT_ADD(stanza_out_text);
		EXT_ADD(frame);
		EXT_ADD(message_undelivered);
		EXT_ADD(subscription_changed);
		EXT_ADD(output_drained);
		EXT_ADD(taken_back);
		EXT_ADD(session_gone);
		EXT_ADD(conn_free);
		EXT_ADD(stanza_received);
		EXT_ADD(stanza_sent);
		EXT_ADD(detach);
		EXT_ADD(session_changed);
		EXT_ADD(worker_frame);
		EXT_ADD(conn_gone);
		EXT_ADD(tick);
		EXT_ADD(message_to_account);
		EXT_ADD(loop_turn);
		EXT_ADD(busy);
		EXT_ADD(message_delivered);
		if (e->message_delivered != NULL)
			ext_hooks.delivered_flags |= e->delivered_flags;
		EXT_ADD(client_element);
		EXT_ADD(session_leaving);
		EXT_ADD(message_text);
		EXT_ADD(presence_to_account);
		EXT_ADD(session_swept);
		if ((e->service_serves != NULL) != (e->service_stanza != NULL)) {
			log_error("extension %s: service_serves and "
				  "service_stanza go together", e->name);
			*error_r = "extension serves a domain without a handler";
			return -1;
		}
		if (e->service_serves != NULL)
			ext_hooks.service[ext_hooks.n_service++] =
				(struct ext_hook){ e, (uint32_t)1 << i };
	}
	return 0;
}

const struct ext *ext_nonza_owner(const char *ns, size_t nslen)
{
	for (unsigned i = 0; i < ext_count; i++)
		for (const char *const *n = ext_all[i]->nonza_ns; n && *n; n++)
			if (strlen(*n) == nslen && memcmp(*n, ns, nslen) == 0)
				return ext_all[i];
	return NULL;
}

void ext_filter(struct conn *c, const struct ext *e, int on)
{
	for (unsigned i = 0; i < ext_count; i++) {
		if (ext_all[i] != e)
			continue;
		if (on)
			c->ext_filter |= (uint32_t)1 << i;
		else
			c->ext_filter &= ~((uint32_t)1 << i);
		return;
	}
}

static unsigned ext_iq_type_of(const char *type)
{
	return strcmp(type, "get") == 0 ? EXT_IQ_GET :
	       strcmp(type, "set") == 0 ? EXT_IQ_SET : 0;
}

ext_iq_fn *ext_iq_handler(const struct xml_node *q, const char *type)
{
	unsigned t = ext_iq_type_of(type);
	const struct xml_node *c = xml_first_element(q);
	for (unsigned i = 0; c != NULL && i < ext_count; i++)
		for (const struct ext_iq_child *h = ext_all[i]->iq_child;
		     h && h->ns; h++)
			if ((h->types & t) && xml_is(q, h->ns, h->name) &&
			    strcmp(c->ns, h->child_ns) == 0)
				return h->fn;
	return ext_iq_handler_plain(q, type);
}

ext_iq_fn *ext_iq_handler_plain(const struct xml_node *q, const char *type)
{
	unsigned t = ext_iq_type_of(type);
	for (unsigned i = 0; i < ext_count; i++)
		for (const struct ext_iq *h = ext_all[i]->iq; h && h->ns; h++)
			if ((h->types & t) && xml_is(q, h->ns, h->name))
				return h->fn;
	return NULL;
}

void ext_disco_features(struct buf *out)
{
	for (unsigned i = 0; i < ext_count; i++)
		for (const char *const *f = ext_all[i]->disco_features;
		     f && *f; f++)
			buf_appendf(out, "<feature var='%s'/>", *f);
}

unsigned ext_domain_items(const struct worker *w, const char *host,
			  struct buf *out)
{
	unsigned n = 0;
	for (unsigned i = 0; i < ext_count; i++)
		if (ext_all[i]->domain_items != NULL)
			n += ext_all[i]->domain_items(w, host, out);
	return n;
}

void ext_session_changed(struct conn *c)
{
	EXT_RUN(session_changed, c);
}

uint32_t ext_session_word(const struct conn *c, unsigned i)
{
	if (i >= ext_count || ext_all[i]->session_save == NULL)
		return 0;
	return ext_all[i]->session_save(c);
}

void ext_session_restore(struct conn *c, const uint32_t *words, unsigned n)
{
	for (unsigned i = 0; i < ext_count && i < n; i++)
		if (ext_all[i]->session_restore != NULL)
			ext_all[i]->session_restore(c, words[i]);
}

int ext_loop_turn(struct worker *w, int64_t now_ms)
{
	int least = -1;
	for (unsigned i = 0; i < ext_hooks.n_loop_turn; i++) {
		int d = ext_hooks.loop_turn[i].e->loop_turn(w, now_ms);
		if (d >= 0 && (least < 0 || d < least))
			least = d;
	}
	return least;
}

unsigned long ext_busy(struct worker *w)
{
	unsigned long n = 0;
	for (unsigned i = 0; i < ext_hooks.n_busy; i++)
		n += ext_hooks.busy[i].e->busy(w);
	return n;
}

void ext_account_features(const struct config *cfg, struct buf *out)
{
	for (unsigned i = 0; i < ext_count; i++) {
		const struct ext *e = ext_all[i];
		for (unsigned j = 0; e->account_features &&
				     e->account_features[j]; j++)
			if (e->account_feature_on == NULL ||
			    e->account_feature_on(cfg, j))
				buf_appendf(out, "<feature var='%s'/>",
					    e->account_features[j]);
	}
}

int ext_make_room(struct conn *c)
{
	for (unsigned i = 0; i < ext_count; i++)
		if (ext_all[i]->make_room != NULL && ext_all[i]->make_room(c))
			return 1;
	return 0;
}

void ext_disco_identities(struct buf *out)
{
	for (unsigned i = 0; i < ext_count; i++)
		for (const char *const *d = ext_all[i]->disco_identities;
		     d && *d; d++)
			buf_appendf(out, "%s", *d);
}

void ext_account_identities(struct buf *out)
{
	for (unsigned i = 0; i < ext_count; i++)
		for (const char *const *d = ext_all[i]->account_identities;
		     d && *d; d++)
			buf_appendf(out, "%s", *d);
}
