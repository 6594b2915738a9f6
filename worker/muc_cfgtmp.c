/*
 * muc_cfgtmp.c - a first, small version of the room configuration's
 * stored text, form and disco#info, for muc.c to run against while
 * muc_form.c gets the whole of section 10.2 (h-mucform replaces this
 * file).  Stored text: "key=0|1" lines and "name=TEXT" etc.
 */
#include "muc.h"
#include "config.h"
#include "buf.h"
#include "xml.h"

#include <stdlib.h>
#include <string.h>

#define NS_XDATA "jabber:x:data"

struct muc_flag {
	const char *var;
	unsigned bit;
};

static unsigned muc_get(const struct muc_config *cf, unsigned bit)
{
	switch (bit) {
	case 0: return cf->persistent;
	case 1: return cf->public_list;
	case 2: return cf->members_only;
	case 3: return cf->moderated;
	case 4: return cf->password_protected;
	case 5: return cf->change_subject;
	case 6: return cf->allow_invites;
	case 7: return cf->whois_anyone;
	default: return cf->logging;
	}
}

static void muc_put(struct muc_config *cf, unsigned bit, unsigned v)
{
	switch (bit) {
	case 0: cf->persistent = v; break;
	case 1: cf->public_list = v; break;
	case 2: cf->members_only = v; break;
	case 3: cf->moderated = v; break;
	case 4: cf->password_protected = v; break;
	case 5: cf->change_subject = v; break;
	case 6: cf->allow_invites = v; break;
	case 7: cf->whois_anyone = v; break;
	default: cf->logging = v; break;
	}
}

static const struct muc_flag muc_flags[] = {
	{ "muc#roomconfig_persistentroom", 0 },
	{ "muc#roomconfig_publicroom", 1 },
	{ "muc#roomconfig_membersonly", 2 },
	{ "muc#roomconfig_moderatedroom", 3 },
	{ "muc#roomconfig_passwordprotectedroom", 4 },
	{ "muc#roomconfig_changesubject", 5 },
	{ "muc#roomconfig_allowinvites", 6 },
	{ "muc#roomconfig_enablelogging", 8 },
};

int muc_config_to_text(const struct muc_config *cf, struct buf *out)
{
	for (unsigned i = 0; i < 9; i++)
		buf_appendf(out, "%u", muc_get(cf, i));
	buf_appendf(out, "\n%s", cf->name);
	return 0;
}

int muc_config_from_text(struct muc_config *cf, const struct config *cfg,
			 const char *text, size_t len)
{
	muc_config_free(cf);
	if (muc_config_default(cf, cfg) < 0)
		return -1;
	if (len < 10 || text[9] != '\n')
		return -1;
	for (unsigned i = 0; i < 9; i++)
		muc_put(cf, i, text[i] == '1');
	char *n = strndup(text + 10, len - 10);
	if (n == NULL)
		return -1;
	free(cf->name);
	cf->name = n;
	return 0;
}

void muc_config_form(const struct muc_config *cf, const struct config *cfg,
		     struct buf *out)
{
	(void)cfg;
	buf_appendf(out, "<x xmlns='" NS_XDATA "' type='form'>"
		    "<field var='FORM_TYPE' type='hidden'><value>"
		    NS_MUC_ROOMCONFIG "</value></field>"
		    "<field var='muc#roomconfig_roomname' type='text-single'>"
		    "<value>");
	xml_escape(out, cf->name, strlen(cf->name), 0);
	buf_appendf(out, "</value></field>");
	for (unsigned i = 0; i < sizeof(muc_flags) / sizeof(muc_flags[0]); i++)
		buf_appendf(out, "<field var='%s' type='boolean'><value>%u"
			    "</value></field>", muc_flags[i].var,
			    muc_get(cf, muc_flags[i].bit));
	buf_appendf(out, "<field var='muc#roomconfig_whois' type='list-single'>"
		    "<value>%s</value><option><value>moderators</value>"
		    "</option><option><value>anyone</value></option></field>"
		    "<field var='muc#roomconfig_roomsecret' "
		    "type='text-private'><value>", cf->whois_anyone ?
		    "anyone" : "moderators");
	xml_escape(out, cf->password, strlen(cf->password), 0);
	buf_appendf(out, "</value></field></x>");
}

static const char *muc_value(const struct xml_node *f)
{
	const struct xml_node *v = xml_child(f, NS_XDATA, "value");
	if (v == NULL || v->children == NULL || v->children->name != NULL)
		return "";
	return v->children->text;
}

int muc_config_submit(struct muc_config *cf, const struct xml_node *x,
		      const struct config *cfg, const char **cond_r,
		      const char **text_r)
{
	(void)cfg;
	for (const struct xml_node *f = xml_first_element(x); f != NULL;
	     f = xml_next_element(f)) {
		const char *var = xml_attr(f, "var");
		if (var == NULL)
			continue;
		const char *v = muc_value(f);
		for (unsigned i = 0; i < sizeof(muc_flags) / sizeof(*muc_flags);
		     i++)
			if (strcmp(var, muc_flags[i].var) == 0)
				muc_put(cf, muc_flags[i].bit,
					strcmp(v, "1") == 0 ||
					strcmp(v, "true") == 0);
		if (strcmp(var, "muc#roomconfig_whois") == 0)
			cf->whois_anyone = strcmp(v, "anyone") == 0;
		char **dst = strcmp(var, "muc#roomconfig_roomname") == 0 ?
			     &cf->name :
			     strcmp(var, "muc#roomconfig_roomsecret") == 0 ?
			     &cf->password : NULL;
		if (dst != NULL) {
			char *c = strdup(v);
			if (c == NULL) {
				*cond_r = "resource-constraint";
				*text_r = NULL;
				return -1;
			}
			free(*dst);
			*dst = c;
		}
	}
	return 0;
}

unsigned muc_config_status_codes(const struct muc_config *old,
				 const struct muc_config *now,
				 unsigned *codes, unsigned max)
{
	unsigned n = 0;
	if (max > 0)
		codes[n++] = 104;
	if (n < max && old->whois_anyone != now->whois_anyone)
		codes[n++] = now->whois_anyone ? 172 : 173;
	if (n < max && old->logging != now->logging)
		codes[n++] = now->logging ? 170 : 171;
	return n;
}

void muc_config_disco_info(const struct muc_config *cf, const char *fallback,
			   const char *subject, unsigned occupants,
			   struct buf *out)
{
	(void)subject;
	(void)occupants;
	buf_appendf(out, "<identity category='conference' type='text' name='");
	const char *name = cf->name[0] != '\0' ? cf->name : fallback;
	xml_escape(out, name, strlen(name), 1);
	buf_appendf(out, "'/><feature var='" NS_MUC "'/>"
		    "<feature var='%s'/><feature var='%s'/><feature var='%s'/>"
		    "<feature var='%s'/><feature var='%s'/><feature var='%s'/>"
		    "<feature var='" NS_OCCUPANT_ID "'/>",
		    cf->public_list ? "muc_public" : "muc_hidden",
		    cf->persistent ? "muc_persistent" : "muc_temporary",
		    cf->members_only ? "muc_membersonly" : "muc_open",
		    cf->moderated ? "muc_moderated" : "muc_unmoderated",
		    cf->whois_anyone ? "muc_nonanonymous" : "muc_semianonymous",
		    cf->password_protected ? "muc_passwordprotected" :
		    "muc_unsecured");
}
