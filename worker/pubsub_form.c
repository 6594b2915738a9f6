/*
 * pubsub_form.c - XEP-0004 forms of XEP-0060 (pubsub_form.h): the node
 * configuration (section 8.2; the field registry of section 16.4.4) and
 * publish-options (section 7.1.5), normalized so that a stored value and
 * a precondition compare as text: booleans "1"/"true" -> "true",
 * "0"/"false" -> "false"; max_items a decimal integer or "max".
 * Failure policy: pure; a form that cannot be taken returns a verdict.
 */
#include "pubsub_form.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum pubsub_ftype { FT_LIST, FT_INT_MAX, FT_BOOL, FT_TEXT };

static const struct {
	const char *var;
	enum pubsub_ftype type;
	const char *options;            /* list-single: space-separated */
	const char *label;
} pubsub_fields[PUBSUB_F_COUNT] = {
	[PUBSUB_F_ACCESS_MODEL] = { "pubsub#access_model", FT_LIST,
		"open presence roster whitelist", "Who may subscribe and "
		"retrieve items" },
	[PUBSUB_F_MAX_ITEMS] = { "pubsub#max_items", FT_INT_MAX, NULL,
		"Max # of items to persist" },
	[PUBSUB_F_PERSIST_ITEMS] = { "pubsub#persist_items", FT_BOOL, NULL,
		"Persist items to storage" },
	[PUBSUB_F_SEND_LAST] = { "pubsub#send_last_published_item", FT_LIST,
		"never on_sub on_sub_and_presence", "When to send the last "
		"published item" },
	[PUBSUB_F_NOTIFY_RETRACT] = { "pubsub#notify_retract", FT_BOOL, NULL,
		"Notify subscribers when items are removed from the node" },
	[PUBSUB_F_NOTIFY_DELETE] = { "pubsub#notify_delete", FT_BOOL, NULL,
		"Notify subscribers when the node is deleted" },
	[PUBSUB_F_NOTIFY_CONFIG] = { "pubsub#notify_config", FT_BOOL, NULL,
		"Notify subscribers when the node configuration changes" },
	[PUBSUB_F_DELIVER_NOTIFICATIONS] = { "pubsub#deliver_notifications",
		FT_BOOL, NULL, "Deliver event notifications" },
	[PUBSUB_F_DELIVER_PAYLOADS] = { "pubsub#deliver_payloads", FT_BOOL,
		NULL, "Deliver payloads with event notifications" },
	[PUBSUB_F_NOTIFICATION_TYPE] = { "pubsub#notification_type", FT_LIST,
		"headline normal", "Message type of event notifications" },
	[PUBSUB_F_TITLE] = { "pubsub#title", FT_TEXT, NULL,
		"A friendly name for the node" },
	[PUBSUB_F_TYPE] = { "pubsub#type", FT_TEXT, NULL,
		"The type of node data, usually specified by the namespace "
		"of the payload" },
	[PUBSUB_F_ITEMREPLY] = { "pubsub#itemreply", FT_LIST,
		"none owner publisher", "Whom to address replies to" },
};

#define VAR_GROUPS "pubsub#roster_groups_allowed"
#define VAR_PUBLISH_MODEL "pubsub#publish_model"
#define VAR_MAX_PAYLOAD "pubsub#max_payload_size"

const char *pubsub_form_var(enum pubsub_field f)
{
	return pubsub_fields[f].var;
}

void pubsub_form_defaults(struct pubsub_config *cfg)
{
	static const char *const def[PUBSUB_F_COUNT] = {
		"presence", "1", "true", "on_sub_and_presence", "false",
		"false", "false", "true", "true", "headline", "", "", "none",
	};
	memset(cfg, 0, sizeof(*cfg));
	memcpy(cfg->v, def, sizeof(def));
	cfg->groups_set = 1;
}

/* Whether word is one of the space-separated options. */
static int pubsub_form_option(const char *options, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = options; *p != '\0'; ) {
		size_t k = strcspn(p, " ");
		if (k == n && n > 0 && memcmp(p, word, n) == 0)
			return 1;
		p += k;
		p += *p == ' ';
	}
	return 0;
}

/* The normalized value of field f, or NULL (not acceptable). */
static const char *pubsub_form_value(struct arena *a, enum pubsub_field f,
				     const char *v,
				     const struct pubsub_form_limits *lim)
{
	switch (pubsub_fields[f].type) {
	case FT_BOOL:
		if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
			return "true";
		if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
			return "false";
		return NULL;
	case FT_LIST:
		return pubsub_form_option(pubsub_fields[f].options, v) ? v : NULL;
	case FT_TEXT:
		return strlen(v) <= PUBSUB_MAX_TEXT ? v : NULL;
	case FT_INT_MAX: {
		if (strcmp(v, "max") == 0)
			return "max";
		if (*v < '0' || *v > '9' || strlen(v) > 9)
			return NULL;
		char *end;
		unsigned long k = strtoul(v, &end, 10);
		if (*end != '\0' || k < 1 || k > lim->max_items)
			return NULL;
		char num[16];
		snprintf(num, sizeof(num), "%lu", k);
		return arena_strdup(a, num);
	}
	}
	return NULL;
}

/* The one <value/> of field f as text ("" when none), or NULL when it has
 * more than one. */
static const char *pubsub_form_single(struct arena *a,
				      const struct xml_node *f)
{
	const struct xml_node *v = xml_child(f, NS_XDATA, "value");
	if (v == NULL)
		return "";
	for (const struct xml_node *n = xml_next_element(v); n != NULL;
	     n = xml_next_element(n))
		if (xml_is(n, NS_XDATA, "value"))
			return NULL;
	return xml_text(a, v);
}

static enum pubsub_form_verdict pubsub_form_groups(
	struct arena *a, const struct xml_node *f, struct pubsub_config *cfg)
{
	cfg->groups_set = 1;
	cfg->ngroups = 0;
	for (const struct xml_node *v = xml_first_element(f); v != NULL;
	     v = xml_next_element(v)) {
		if (!xml_is(v, NS_XDATA, "value"))
			continue;
		const char *g = xml_text(a, v);
		if (g == NULL)
			return PUBSUB_FORM_BAD_VALUE;
		if (g[0] == '\0' || strlen(g) > PUBSUB_MAX_TEXT ||
		    cfg->ngroups >= PUBSUB_MAX_GROUPS)
			return PUBSUB_FORM_BAD_VALUE;
		unsigned i = 0;
		while (i < cfg->ngroups && strcmp(cfg->groups[i], g) != 0)
			i++;
		if (i == cfg->ngroups)      /* a set: duplicates once */
			cfg->groups[cfg->ngroups++] = g;
	}
	return PUBSUB_FORM_OK;
}

enum pubsub_form_verdict pubsub_form_parse(struct arena *a,
					   const struct xml_node *x,
					   enum pubsub_form_kind kind,
					   const struct pubsub_form_limits *lim,
					   struct pubsub_config *cfg,
					   const char **field_r)
{
	const char *want = kind == PUBSUB_FORM_CONFIG ?
		NS_PUBSUB_NODE_CONFIG : NS_PUBSUB_PUBLISH_OPTIONS;
	const char *type = xml_attr(x, "type");
	int form_type_seen = 0;

	memset(cfg, 0, sizeof(*cfg));
	*field_r = NULL;
	if (!xml_is(x, NS_XDATA, "x") || type == NULL)
		return PUBSUB_FORM_BAD_REQUEST;
	if (strcmp(type, "cancel") == 0 && kind == PUBSUB_FORM_CONFIG)
		return PUBSUB_FORM_CANCEL;
	if (strcmp(type, "submit") != 0)
		return PUBSUB_FORM_BAD_REQUEST;
	for (const struct xml_node *f = xml_first_element(x); f != NULL;
	     f = xml_next_element(f)) {
		if (!xml_is(f, NS_XDATA, "field"))
			continue;
		const char *var = xml_attr(f, "var");
		if (var == NULL)
			continue;
		*field_r = var;
		if (strcmp(var, VAR_GROUPS) == 0) {
			enum pubsub_form_verdict v = pubsub_form_groups(a, f, cfg);
			if (v != PUBSUB_FORM_OK)
				return v;
			continue;
		}
		const char *val = pubsub_form_single(a, f);
		if (val == NULL)
			return PUBSUB_FORM_BAD_VALUE;
		if (strcmp(var, "FORM_TYPE") == 0) {
			if (strcmp(val, want) != 0)
				return PUBSUB_FORM_BAD_REQUEST;
			form_type_seen = 1;
			continue;
		}
		if (strcmp(var, VAR_PUBLISH_MODEL) == 0) {
			/* PEP: only the owner publishes (XEP-0163 section 3) */
			if (strcmp(val, "publishers") != 0)
				return PUBSUB_FORM_BAD_VALUE;
			continue;
		}
		if (strcmp(var, VAR_MAX_PAYLOAD) == 0) {
			/* read-only: a round trip gives it back as offered;
			 * as a precondition it must be ours */
			char *end;
			errno = 0;
			unsigned long long k = strtoull(val, &end, 10);
			if (kind == PUBSUB_FORM_PUBLISH_OPTIONS &&
			    (val[0] < '0' || val[0] > '9' || *end != '\0' ||
			     errno != 0 || k != lim->max_item_size))
				return PUBSUB_FORM_BAD_VALUE;
			continue;
		}
		enum pubsub_field i = 0;
		while (i < PUBSUB_F_COUNT && strcmp(pubsub_fields[i].var, var))
			i++;
		if (i == PUBSUB_F_COUNT) {
			if (kind == PUBSUB_FORM_PUBLISH_OPTIONS)
				return PUBSUB_FORM_UNKNOWN_FIELD;
			continue;       /* configure: unknown fields ignored */
		}
		if (i == PUBSUB_F_ACCESS_MODEL && strcmp(val, "authorize") == 0)
			return PUBSUB_FORM_AUTHORIZE;
		const char *norm = pubsub_form_value(a, i, val, lim);
		if (norm == NULL)
			return PUBSUB_FORM_BAD_VALUE;
		cfg->v[i] = norm;
	}
	*field_r = NULL;
	if (kind == PUBSUB_FORM_PUBLISH_OPTIONS && !form_type_seen)
		return PUBSUB_FORM_BAD_REQUEST;
	return PUBSUB_FORM_OK;
}

static void pubsub_form_field(struct buf *out, const char *var,
			      const char *type, const char *label,
			      const char *value)
{
	buf_appendf(out, "<field var='%s' type='%s'", var, type);
	if (label != NULL)
		buf_appendf(out, " label='%s'", label);
	buf_appendf(out, "><value>");
	xml_escape(out, value, strlen(value), 0);
	buf_appendf(out, "</value></field>");
}

int pubsub_form_render(struct buf *out, const struct pubsub_config *cfg,
		       const struct pubsub_form_limits *lim)
{
	size_t start = buf_used(out);
	buf_appendf(out, "<x xmlns='" NS_XDATA "' type='form'>");
	pubsub_form_field(out, "FORM_TYPE", "hidden", NULL,
			  NS_PUBSUB_NODE_CONFIG);
	for (enum pubsub_field i = 0; i < PUBSUB_F_COUNT; i++) {
		const char *v = cfg->v[i] != NULL ? cfg->v[i] : "";
		switch (pubsub_fields[i].type) {
		case FT_BOOL:
			pubsub_form_field(out, pubsub_fields[i].var, "boolean",
					  pubsub_fields[i].label,
					  strcmp(v, "true") == 0 ? "1" : "0");
			break;
		case FT_TEXT:
		case FT_INT_MAX:
			pubsub_form_field(out, pubsub_fields[i].var,
					  "text-single", pubsub_fields[i].label,
					  v);
			break;
		case FT_LIST: {
			/* the value, then the options (XEP-0004 3.2) */
			size_t end = out->len;
			pubsub_form_field(out, pubsub_fields[i].var,
					  "list-single", pubsub_fields[i].label,
					  v);
			if (out->len >= end + strlen("</field>"))
				out->len -= strlen("</field>");
			for (const char *p = pubsub_fields[i].options; *p; ) {
				size_t k = strcspn(p, " ");
				buf_appendf(out, "<option><value>%.*s</value>"
					    "</option>", (int)k, p);
				p += k;
				p += *p == ' ';
			}
			buf_appendf(out, "</field>");
			break;
		}
		}
	}
	buf_appendf(out, "<field var='" VAR_GROUPS "' type='list-multi' "
		    "label='Roster groups allowed to subscribe'>");
	for (unsigned g = 0; g < cfg->ngroups; g++) {
		buf_appendf(out, "<value>");
		xml_escape(out, cfg->groups[g], strlen(cfg->groups[g]), 0);
		buf_appendf(out, "</value>");
	}
	buf_appendf(out, "</field>");
	pubsub_form_field(out, VAR_PUBLISH_MODEL, "list-single",
			  "Who may publish", "publishers");
	char num[32];
	snprintf(num, sizeof(num), "%llu", lim->max_item_size);
	pubsub_form_field(out, VAR_MAX_PAYLOAD, "text-single",
			  "Max payload size in bytes (read-only)", num);
	if (buf_appendf(out, "</x>") < 0) {
		out->len = start;       /* out of memory: nothing half-written */
		return -1;
	}
	return 0;
}

int pubsub_form_array(struct arena *a, const char *s, const char **out,
		      int max)
{
	int n = 0;
	if (*s++ != '{')
		return -1;
	if (*s == '}')
		return s[1] == '\0' ? 0 : -1;
	for (;;) {
		struct buf el;
		int quoted = *s == '"';
		if (n >= max)
			return -1;
		buf_init(&el, 0);
		if (quoted) {
			for (s++; *s != '"'; s++) {
				if (*s == '\\')
					s++;
				if (*s == '\0') {
					buf_free(&el);
					return -1;
				}
				buf_append(&el, s, 1);
			}
			s++;
		} else {
			size_t k = strcspn(s, ",}\"\\{");
			if (k == 0) {
				buf_free(&el);
				return -1;
			}
			buf_append(&el, s, k);
			s += k;
		}
		buf_append(&el, "", 1);
		int is_null = !quoted && strcmp(buf_head(&el), "NULL") == 0;
		out[n] = is_null ? NULL : arena_strdup(a, buf_head(&el));
		buf_free(&el);
		if (out[n] == NULL && !is_null)
			return -1;
		n++;
		if (*s == '}')
			return s[1] == '\0' ? n : -1;
		if (*s++ != ',')
			return -1;
	}
}

int pubsub_form_array_literal(struct buf *out, const char *const *v,
			      unsigned n)
{
	buf_append(out, "{", 1);
	for (unsigned i = 0; i < n; i++) {
		if (i > 0)
			buf_append(out, ",", 1);
		if (v[i] == NULL) {
			buf_appendf(out, "NULL");
			continue;
		}
		buf_append(out, "\"", 1);
		for (const char *p = v[i]; *p; p++) {
			if (*p == '"' || *p == '\\')
				buf_append(out, "\\", 1);
			buf_append(out, p, 1);
		}
		buf_append(out, "\"", 1);
	}
	return buf_append(out, "}", 1);
}
