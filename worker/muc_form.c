/*
 * muc_form.c - a room's configuration (XEP-0045 section 10.2): the
 * defaults of a new room, copies, the stored text (muc_rooms.config),
 * the owner's muc#roomconfig form and its submission, the status codes
 * of a change (10.2.1), and the room's disco#info with its muc#roominfo
 * form (6.4, XEP-0128).  Pure: no I/O, no database; fuzzed by
 * fuzz/fuzz_muc_config.c.
 *
 * Stored text: one "key=value\n" line per setting, keys as in
 * muc_fields[].key.  In a value '\' is written "\\", LF "\n" and CR
 * "\r"; nothing else is escaped (strings are UTF-8).  Booleans are 0/1,
 * max_users a decimal (0: the service's muc.max_occupants), role sets a
 * comma list of moderator, participant, visitor (empty: none), allow_pm
 * and whois the form's words.  Reading starts from the defaults; a key
 * we do not know, or a line without '=', is skipped (a later version
 * may add keys); a key given twice takes the last value.
 *
 * Failure policy: out of memory is -1 to the caller (the void
 * renderers leave out as it was), which answers <resource-constraint/>;
 * a refused form is an RFC 6120 condition and a text for the caller's
 * error, cf untouched; a stored value we cannot take keeps the default
 * and the load logs one warn line (the room works on).  Nothing sends.
 */
#include "muc.h"

#include "buf.h"
#include "config.h"
#include "log.h"
#include "xml.h"

#include <stdlib.h>
#include <string.h>

#ifndef NS_XDATA
#define NS_XDATA "jabber:x:data"
#endif

/* ---- defaults and copies ------------------------------------------------ */

void muc_config_free(struct muc_config *cf)
{
	free(cf->name);
	free(cf->description);
	free(cf->lang);
	free(cf->password);
	memset(cf, 0, sizeof(*cf));
}

int muc_config_default(struct muc_config *cf, const struct config *cfg)
{
	(void)cfg;
	memset(cf, 0, sizeof(*cf));
	/* Prosody's and ejabberd's defaults for a new room: temporary,
	 * public, open, unmoderated, semi-anonymous, archived */
	cf->public_list = 1;
	cf->change_subject = 0;
	cf->allow_invites = 0;
	cf->logging = 1;
	cf->members_by_default = 1;
	cf->presence_broadcast = MUC_ROLES_ALL;
	cf->get_member_list = MUC_ROLES_PARTICIPANT | MUC_ROLES_MODERATOR;
	cf->allow_pm = MUC_PM_ANYONE;
	cf->name = strdup("");
	cf->description = strdup("");
	cf->lang = strdup("");
	cf->password = strdup("");
	if (cf->name == NULL || cf->description == NULL || cf->lang == NULL ||
	    cf->password == NULL) {
		muc_config_free(cf);
		return -1;
	}
	return 0;
}

static int muc_dup(char **dst, const char *src)
{
	*dst = strdup(src != NULL ? src : "");
	return *dst == NULL ? -1 : 0;
}

int muc_config_copy(struct muc_config *dst, const struct muc_config *src)
{
	struct muc_config t = *src;
	t.name = t.description = t.lang = t.password = NULL;
	if (muc_dup(&t.name, src->name) < 0 ||
	    muc_dup(&t.description, src->description) < 0 ||
	    muc_dup(&t.lang, src->lang) < 0 ||
	    muc_dup(&t.password, src->password) < 0) {
		muc_config_free(&t);
		return -1;
	}
	muc_config_free(dst);
	*dst = t;
	return 0;
}

/* ---- the fields --------------------------------------------------------- */

enum muc_field {
	MF_NAME = 0,
	MF_DESC,
	MF_LANG,
	MF_LOGGING,
	MF_CHANGE_SUBJECT,
	MF_ALLOW_INVITES,
	MF_ALLOW_PM,
	MF_MAX_USERS,
	MF_PRESENCE_BROADCAST,
	MF_GET_MEMBER_LIST,
	MF_PUBLIC,
	MF_PERSISTENT,
	MF_MODERATED,
	MF_MEMBERS_ONLY,
	MF_PASSWORD_PROTECTED,
	MF_PASSWORD,
	MF_WHOIS,
	MF_MEMBERS_BY_DEFAULT,
	MF_COUNT
};

enum muc_kind {
	MK_TEXT = 0,    /* text-single, at most muc.max_subject_bytes */
	MK_SECRET,      /* the same, text-private */
	MK_LANG,        /* a language tag or "" */
	MK_BOOL,
	MK_PM,          /* list-single of muc_pm_words */
	MK_WHOIS,       /* list-single of muc_whois_words */
	MK_MAX_USERS,   /* list-single: "none" or 1..muc.max_occupants */
	MK_ROLES,       /* list-multi of muc_role_words */
};

/* In the order of the form (XEP-0045 example 163) and of the stored
 * text.  var NULL: stored, not in the form (members_by_default has no
 * field in the XEP's registry). */
static const struct {
	const char *key;
	const char *var;
	const char *label;
	enum muc_kind kind;
} muc_fields[MF_COUNT] = {
	[MF_NAME] = { "name", "muc#roomconfig_roomname",
		"Natural-Language Room Name", MK_TEXT },
	[MF_DESC] = { "description", "muc#roomconfig_roomdesc",
		"Short Description of Room", MK_TEXT },
	[MF_LANG] = { "lang", "muc#roomconfig_lang",
		"Natural Language for Room Discussions", MK_LANG },
	/* the room's archive (XEP-0313) and the history on entering, as
	 * Prosody's muc_mam names it; not XEP-0045's "public logging"
	 * (muc#roomconfig_enablelogging, status 170), which is about
	 * logs published on the web and which this server has not */
	[MF_LOGGING] = { "logging", "muc#roomconfig_enablearchiving",
		"Archive messages (history and XEP-0313)", MK_BOOL },
	[MF_CHANGE_SUBJECT] = { "change_subject",
		"muc#roomconfig_changesubject",
		"Allow Occupants to Change Subject?", MK_BOOL },
	[MF_ALLOW_INVITES] = { "allow_invites", "muc#roomconfig_allowinvites",
		"Allow Occupants to Invite Others?", MK_BOOL },
	[MF_ALLOW_PM] = { "allow_pm", "muc#roomconfig_allowpm",
		"Who Can Send Private Messages?", MK_PM },
	[MF_MAX_USERS] = { "max_users", "muc#roomconfig_maxusers",
		"Maximum Number of Occupants", MK_MAX_USERS },
	[MF_PRESENCE_BROADCAST] = { "presence_broadcast",
		"muc#roomconfig_presencebroadcast",
		"Roles for which Presence is Broadcast", MK_ROLES },
	[MF_GET_MEMBER_LIST] = { "get_member_list",
		"muc#roomconfig_getmemberlist",
		"Roles and Affiliations that May Retrieve Member List",
		MK_ROLES },
	[MF_PUBLIC] = { "public", "muc#roomconfig_publicroom",
		"Make Room Publicly Searchable?", MK_BOOL },
	[MF_PERSISTENT] = { "persistent", "muc#roomconfig_persistentroom",
		"Make Room Persistent?", MK_BOOL },
	[MF_MODERATED] = { "moderated", "muc#roomconfig_moderatedroom",
		"Make Room Moderated?", MK_BOOL },
	[MF_MEMBERS_ONLY] = { "members_only", "muc#roomconfig_membersonly",
		"Make Room Members Only?", MK_BOOL },
	[MF_PASSWORD_PROTECTED] = { "password_protected",
		"muc#roomconfig_passwordprotectedroom",
		"Password Required for Entry?", MK_BOOL },
	[MF_PASSWORD] = { "password", "muc#roomconfig_roomsecret", "Password",
		MK_SECRET },
	[MF_WHOIS] = { "whois", "muc#roomconfig_whois",
		"Who May Discover Real JIDs?", MK_WHOIS },
	[MF_MEMBERS_BY_DEFAULT] = { "members_by_default", NULL, NULL,
		MK_BOOL },
};

/* enum muc_allow_pm order */
static const char *const muc_pm_words[] = {
	"anyone", "participants", "moderators", "none", NULL };
static const char *const muc_pm_labels[] = {
	"Anyone", "Anyone with Voice", "Moderators Only", "Nobody" };
/* whois_anyone 0, 1 */
static const char *const muc_whois_words[] = { "moderators", "anyone", NULL };
static const char *const muc_whois_labels[] = { "Moderators Only", "Anyone" };
/* the form lists roles by rank, highest first, as the XEP's example */
static const struct {
	const char *word, *label;
	unsigned bit;
} muc_roles[] = {
	{ "moderator", "Moderator", MUC_ROLES_MODERATOR },
	{ "participant", "Participant", MUC_ROLES_PARTICIPANT },
	{ "visitor", "Visitor", MUC_ROLES_VISITOR },
};
#define MUC_NROLES (sizeof(muc_roles) / sizeof(muc_roles[0]))

static int muc_bool_get(const struct muc_config *cf, enum muc_field f)
{
	switch (f) {
	case MF_LOGGING: return cf->logging;
	case MF_CHANGE_SUBJECT: return cf->change_subject;
	case MF_ALLOW_INVITES: return cf->allow_invites;
	case MF_PUBLIC: return cf->public_list;
	case MF_PERSISTENT: return cf->persistent;
	case MF_MODERATED: return cf->moderated;
	case MF_MEMBERS_ONLY: return cf->members_only;
	case MF_PASSWORD_PROTECTED: return cf->password_protected;
	case MF_MEMBERS_BY_DEFAULT: return cf->members_by_default;
	default: return 0;
	}
}

static void muc_bool_set(struct muc_config *cf, enum muc_field f, int v)
{
	switch (f) {
	case MF_LOGGING: cf->logging = v; break;
	case MF_CHANGE_SUBJECT: cf->change_subject = v; break;
	case MF_ALLOW_INVITES: cf->allow_invites = v; break;
	case MF_PUBLIC: cf->public_list = v; break;
	case MF_PERSISTENT: cf->persistent = v; break;
	case MF_MODERATED: cf->moderated = v; break;
	case MF_MEMBERS_ONLY: cf->members_only = v; break;
	case MF_PASSWORD_PROTECTED: cf->password_protected = v; break;
	case MF_MEMBERS_BY_DEFAULT: cf->members_by_default = v; break;
	default: break;
	}
}

/* The string field f of cf (MK_TEXT, MK_SECRET, MK_LANG). */
static char **muc_str(struct muc_config *cf, enum muc_field f)
{
	switch (f) {
	case MF_NAME: return &cf->name;
	case MF_DESC: return &cf->description;
	case MF_LANG: return &cf->lang;
	default: return &cf->password;
	}
}

static unsigned *muc_roles_of(struct muc_config *cf, enum muc_field f)
{
	return f == MF_PRESENCE_BROADCAST ? &cf->presence_broadcast
					  : &cf->get_member_list;
}

/* ---- values ------------------------------------------------------------- */

enum muc_verdict {
	MV_OK = 0,
	MV_SYNTAX,      /* bad-request */
	MV_VALUE,       /* not-acceptable */
	MV_NOMEM,
};

/* Whether s[0..n) is UTF-8 (RFC 3629: no overlongs, no surrogates, at
 * most U+10FFFF) of characters XML 1.0 can carry (section 2.2: no C0
 * control but TAB, LF, CR; not U+FFFE, U+FFFF): what comes back from
 * storage is written into XML, and must read back the same. */
static int muc_xml_chars(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	while (p < end) {
		unsigned c = *p++, k, min, cp;
		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
			return 0;
		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf)
			k = 1, min = 0x80, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			k = 2, min = 0x800, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 3, min = 0x10000, cp = c & 0x07;
		else
			return 0;
		if ((size_t)(end - p) < k)
			return 0;
		for (unsigned i = 0; i < k; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (*p & 0x3f);
		}
		if (cp < min || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe ||
		    cp == 0xffff)
			return 0;
	}
	return 1;
}

/* RFC 5646 in the shape xml:lang needs here: subtags of 1-8 letters or
 * digits joined by '-', at most 35 characters (section 4.4.1: the
 * length every implementation must take), or "" for none. */
static int muc_lang_ok(const char *v)
{
	size_t n = strlen(v), run = 0;
	if (n > 35)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (c == '-') {
			if (run == 0 || i + 1 == n)
				return 0;
			run = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (c >= '0' && c <= '9')) {
			if (++run > 8)
				return 0;
		} else {
			return 0;
		}
	}
	return 1;
}

/* XEP-0004 section 3.3 boolean (xs:boolean): 1 / 0, or -1. */
static int muc_bool_parse(const char *v)
{
	if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
		return 1;
	if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
		return 0;
	return -1;
}

static int muc_word(const char *const *words, const char *v)
{
	for (int i = 0; words[i] != NULL; i++)
		if (strcmp(words[i], v) == 0)
			return i;
	return -1;
}

static unsigned muc_role_bit(const char *w, size_t n)
{
	for (unsigned i = 0; i < MUC_NROLES; i++)
		if (strlen(muc_roles[i].word) == n &&
		    memcmp(muc_roles[i].word, w, n) == 0)
			return muc_roles[i].bit;
	return 0;
}

/* "none" is 0 (the service's limit); otherwise 1..muc.max_occupants in
 * decimal digits.  0 or -1. */
static int muc_max_users_parse(const char *v, const struct config *cfg,
			       unsigned *r)
{
	if (strcmp(v, "none") == 0) {
		*r = 0;
		return 0;
	}
	size_t n = strlen(v);
	if (n == 0 || n > 9 || strspn(v, "0123456789") != n)
		return -1;
	unsigned long k = strtoul(v, NULL, 10);
	if (k < 1 || k > cfg->muc_max_occupants)
		return -1;
	*r = (unsigned)k;
	return 0;
}

static enum muc_verdict muc_str_set(struct muc_config *cf, enum muc_field f,
				    const char *v)
{
	char *s = strdup(v), **slot = muc_str(cf, f);
	if (s == NULL)
		return MV_NOMEM;
	free(*slot);
	*slot = s;
	return MV_OK;
}

/* Set field f (not MK_ROLES) of cf from v.  The length limit applies
 * only to what an owner changes (limit_text, and v not the value it
 * had): a name stored under a larger muc.max_subject_bytes stays when
 * the operator lowers it, and the form submitted back unchanged is
 * still accepted. */
static enum muc_verdict muc_set(struct muc_config *cf,
				const struct config *cfg, enum muc_field f,
				const char *v, int limit_text)
{
	int i;
	unsigned u;
	switch (muc_fields[f].kind) {
	case MK_TEXT:
	case MK_SECRET:
		if (!muc_xml_chars(v, strlen(v)) ||
		    (limit_text && strlen(v) > cfg->muc_max_subject_bytes &&
		     strcmp(v, *muc_str(cf, f)) != 0))
			return MV_VALUE;
		return muc_str_set(cf, f, v);
	case MK_LANG:
		return muc_lang_ok(v) ? muc_str_set(cf, f, v) : MV_VALUE;
	case MK_BOOL:
		if ((i = muc_bool_parse(v)) < 0)
			return MV_SYNTAX;
		muc_bool_set(cf, f, i);
		return MV_OK;
	case MK_PM:
		if ((i = muc_word(muc_pm_words, v)) < 0)
			return MV_VALUE;
		cf->allow_pm = (enum muc_allow_pm)i;
		return MV_OK;
	case MK_WHOIS:
		if ((i = muc_word(muc_whois_words, v)) < 0)
			return MV_VALUE;
		cf->whois_anyone = i;
		return MV_OK;
	case MK_MAX_USERS:
		if (muc_max_users_parse(v, cfg, &u) < 0)
			return MV_VALUE;
		cf->max_users = u;
		return MV_OK;
	case MK_ROLES:
		break;
	}
	return MV_SYNTAX;
}

/* ---- stored text -------------------------------------------------------- */

/* Writers return 0, or -1 when a piece did not fit (the buffer's cap,
 * or memory); a caller adds them up with |= and, on -1, cuts out back
 * to where it started, so nothing half-written stays. */

static int muc_text_escaped(struct buf *out, const char *s)
{
	int r = 0;
	for (const char *p = s; *p != '\0'; p++) {
		size_t k = strcspn(p, "\\\n\r");
		r |= buf_append(out, p, k);
		p += k;
		if (*p == '\0')
			break;
		r |= buf_append(out, *p == '\\' ? "\\\\" : *p == '\n' ?
				"\\n" : "\\r", 2);
	}
	return r;
}

static int muc_text_roles(struct buf *out, unsigned mask)
{
	int first = 1, r = 0;
	for (unsigned i = 0; i < MUC_NROLES; i++) {
		if (!(mask & muc_roles[i].bit))
			continue;
		r |= buf_appendf(out, "%s%s", first ? "" : ",",
				 muc_roles[i].word);
		first = 0;
	}
	return r;
}

static int muc_text_value(struct buf *out, const struct muc_config *cf,
			  enum muc_field f)
{
	struct muc_config *m = (struct muc_config *)cf;
	switch (muc_fields[f].kind) {
	case MK_TEXT:
	case MK_SECRET:
	case MK_LANG:
		return muc_text_escaped(out, *muc_str(m, f));
	case MK_BOOL:
		return buf_appendf(out, "%d", muc_bool_get(cf, f));
	case MK_PM:
		return buf_appendf(out, "%s", muc_pm_words[
			cf->allow_pm <= MUC_PM_NONE ? cf->allow_pm : 0]);
	case MK_WHOIS:
		return buf_appendf(out, "%s",
				   muc_whois_words[cf->whois_anyone]);
	case MK_MAX_USERS:
		/* 0 is "none" (the service's limit): what the parser takes
		 * back (a stored "0" was refused, and logged, at each read) */
		if (cf->max_users == 0)
			return buf_appendf(out, "none");
		return buf_appendf(out, "%u", cf->max_users);
	case MK_ROLES:
		return muc_text_roles(out, *muc_roles_of(m, f));
	}
	return 0;
}

int muc_config_to_text(const struct muc_config *cf, struct buf *out)
{
	size_t start = out->len;
	int r = 0;
	for (enum muc_field f = 0; f < MF_COUNT; f++) {
		r |= buf_appendf(out, "%s=", muc_fields[f].key);
		r |= muc_text_value(out, cf, f);
		r |= buf_append(out, "\n", 1);
	}
	if (r < 0)
		out->len = start;
	return r < 0 ? -1 : 0;
}

/* Undo muc_text_escaped() on v[0..n) into a NUL-terminated heap string
 * (*r), or NULL in *r when it is not one we write (a lone '\', an
 * unknown escape, a NUL byte).  -1 out of memory. */
static int muc_text_unescape(const char *v, size_t n, char **r)
{
	char *s = malloc(n + 1), *o = s;
	*r = NULL;
	if (s == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (c == '\0')
			goto bad;
		if (c == '\\') {
			if (++i == n)
				goto bad;
			c = v[i] == '\\' ? '\\' : v[i] == 'n' ? '\n' :
			    v[i] == 'r' ? '\r' : '\0';
			if (c == '\0')
				goto bad;
		}
		*o++ = c;
	}
	*o = '\0';
	*r = s;
	return 0;
bad:
	free(s);
	return 0;
}

static enum muc_verdict muc_text_roles_parse(struct muc_config *cf,
					     enum muc_field f, const char *v)
{
	unsigned mask = 0;
	for (const char *p = v; *p != '\0'; ) {
		size_t k = strcspn(p, ",");
		unsigned bit = muc_role_bit(p, k);
		if (bit == 0)
			return MV_VALUE;
		mask |= bit;
		p += k;
		if (*p == ',' && *++p == '\0')
			return MV_VALUE;        /* "a," */
	}
	*muc_roles_of(cf, f) = mask;
	return MV_OK;
}

/* One stored line: 0 (taken or skipped), 1 (a value we could not take),
 * -1 out of memory.  *bad_r names its key then. */
static int muc_text_line(struct muc_config *cf, const struct config *cfg,
			 const char *line, size_t n, const char **bad_r)
{
	const char *eq = memchr(line, '=', n);
	if (eq == NULL)
		return 0;
	enum muc_field f = 0;
	size_t klen = (size_t)(eq - line);
	while (f < MF_COUNT && (strlen(muc_fields[f].key) != klen ||
				memcmp(muc_fields[f].key, line, klen) != 0))
		f++;
	if (f == MF_COUNT)
		return 0;
	char *v;
	if (muc_text_unescape(eq + 1, n - klen - 1, &v) < 0)
		return -1;
	enum muc_verdict r = MV_VALUE;
	if (v != NULL)
		r = muc_fields[f].kind == MK_ROLES ?
			muc_text_roles_parse(cf, f, v) :
			muc_set(cf, cfg, f, v, 0);
	free(v);
	if (r == MV_NOMEM)
		return -1;
	if (r == MV_OK)
		return 0;
	*bad_r = muc_fields[f].key;
	return 1;
}

int muc_config_from_text(struct muc_config *cf, const struct config *cfg,
			 const char *text, size_t len)
{
	struct muc_config t;
	const char *bad = NULL;
	unsigned nbad = 0;
	/* read into a new one: out of memory half-way leaves cf whole */
	if (muc_config_default(&t, cfg) < 0)
		return -1;
	for (size_t i = 0; i < len; ) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t n = nl != NULL ? (size_t)(nl - (text + i)) : len - i;
		int r = muc_text_line(&t, cfg, text + i, n, &bad);
		if (r < 0) {
			muc_config_free(&t);
			return -1;
		}
		nbad += (unsigned)r;
		i += n + 1;
	}
	/* the rule a submission keeps (muc_submit_password) */
	if (t.password_protected != (t.password[0] != '\0')) {
		if (nbad++ == 0)
			bad = muc_fields[MF_PASSWORD_PROTECTED].key;
		t.password_protected = 0;
		t.password[0] = '\0';
	}
	if (nbad > 0)
		log_warn("muc: a stored room configuration has %u value(s) "
			 "out of range or unreadable (first: %s): defaults "
			 "used", nbad, bad);
	muc_config_free(cf);
	*cf = t;
	return 0;
}

/* ---- the owner's form --------------------------------------------------- */

static int muc_form_value(struct buf *out, const char *v)
{
	int r = buf_appendf(out, "<value>");
	r |= xml_escape(out, v, strlen(v), 0);
	r |= buf_appendf(out, "</value>");
	return r;
}

static int muc_form_option(struct buf *out, const char *label,
			   const char *value)
{
	int r = buf_appendf(out, "<option label='");
	r |= xml_escape(out, label, strlen(label), 1);
	r |= buf_appendf(out, "'>");
	r |= muc_form_value(out, value);
	r |= buf_appendf(out, "</option>");
	return r;
}

/* <field var type label> (labels are ours: plain ASCII, no quotes) */
static int muc_form_open(struct buf *out, enum muc_field f, const char *type)
{
	return buf_appendf(out, "<field var='%s' type='%s' label='%s'>",
			   muc_fields[f].var, type, muc_fields[f].label);
}

static int muc_form_number(struct buf *out, unsigned v, int option)
{
	char num[16];
	snprintf(num, sizeof(num), "%u", v);
	return option ? muc_form_option(out, num, num)
		      : muc_form_value(out, num);
}

/* The choices of maxusers: the XEP's 10, 20, 30, 50, 100 and on by the
 * same steps up to muc.max_occupants, which is offered itself, as is a
 * room's value between two steps (a limit lowered since, or a number an
 * owner typed); "none" is the service's limit, whatever it becomes. */
static int muc_form_max_users(struct buf *out, const struct muc_config *cf,
			      const struct config *cfg)
{
	static const unsigned steps[] = { 10, 20, 30, 50, 100, 200, 300, 500,
		1000, 2000, 3000, 5000, 10000, 20000, 50000, 100000 };
	const unsigned nsteps = sizeof(steps) / sizeof(steps[0]);
	unsigned max = cfg->muc_max_occupants, shown = 0, own = cf->max_users;
	char label[48];
	int r = muc_form_open(out, MF_MAX_USERS, "list-single");
	r |= own == 0 ? muc_form_value(out, "none")
		      : muc_form_number(out, own, 0);
	for (unsigned i = 0; i <= nsteps; i++) {
		unsigned v = i < nsteps ? steps[i] : max;
		if (v > max)
			v = max;
		if (v <= shown)
			continue;
		if (own > shown && own < v)     /* the room's own, in place */
			r |= muc_form_number(out, own, 1);
		r |= muc_form_number(out, v, 1);
		shown = v;
	}
	snprintf(label, sizeof(label), "None (the service's %u)", max);
	r |= muc_form_option(out, label, "none");
	r |= buf_appendf(out, "</field>");
	return r;
}

static int muc_form_roles(struct buf *out, enum muc_field f, unsigned mask)
{
	int r = muc_form_open(out, f, "list-multi");
	for (unsigned i = 0; i < MUC_NROLES; i++)
		if (mask & muc_roles[i].bit)
			r |= muc_form_value(out, muc_roles[i].word);
	for (unsigned i = 0; i < MUC_NROLES; i++)
		r |= muc_form_option(out, muc_roles[i].label,
				     muc_roles[i].word);
	r |= buf_appendf(out, "</field>");
	return r;
}

static int muc_form_list(struct buf *out, enum muc_field f,
			 const char *const *words, const char *const *labels,
			 unsigned value)
{
	int r = muc_form_open(out, f, "list-single");
	r |= muc_form_value(out, words[value]);
	for (unsigned i = 0; words[i] != NULL; i++)
		r |= muc_form_option(out, labels[i], words[i]);
	r |= buf_appendf(out, "</field>");
	return r;
}

static int muc_form_field(struct buf *out, const struct muc_config *cf,
			  const struct config *cfg, enum muc_field f)
{
	struct muc_config *m = (struct muc_config *)cf;
	int r = 0;
	switch (muc_fields[f].kind) {
	case MK_TEXT:
	case MK_LANG:
	case MK_SECRET:
		r |= muc_form_open(out, f, muc_fields[f].kind == MK_SECRET ?
				   "text-private" : "text-single");
		r |= muc_form_value(out, *muc_str(m, f));
		return r | buf_appendf(out, "</field>");
	case MK_BOOL:
		r |= muc_form_open(out, f, "boolean");
		r |= muc_form_value(out, muc_bool_get(cf, f) ? "1" : "0");
		return r | buf_appendf(out, "</field>");
	case MK_PM:
		return muc_form_list(out, f, muc_pm_words, muc_pm_labels,
				     cf->allow_pm <= MUC_PM_NONE ?
				     cf->allow_pm : 0);
	case MK_WHOIS:
		return muc_form_list(out, f, muc_whois_words, muc_whois_labels,
				     cf->whois_anyone);
	case MK_MAX_USERS:
		return muc_form_max_users(out, cf, cfg);
	case MK_ROLES:
		return muc_form_roles(out, f, *muc_roles_of(m, f));
	}
	return r;
}

void muc_config_form(const struct muc_config *cf, const struct config *cfg,
		     struct buf *out)
{
	size_t start = out->len;
	int r = buf_appendf(out, "<x xmlns='" NS_XDATA "' type='form'>"
			    "<title>Room configuration</title>"
			    "<field var='FORM_TYPE' type='hidden'><value>"
			    NS_MUC_ROOMCONFIG "</value></field>");
	for (enum muc_field f = 0; f < MF_COUNT; f++)
		if (muc_fields[f].var != NULL)
			r |= muc_form_field(out, cf, cfg, f);
	r |= buf_appendf(out, "</x>");
	if (r < 0)
		out->len = start;
}

/* ---- submission --------------------------------------------------------- */

struct muc_submit {
	struct arena *a;
	const struct config *cfg;
	unsigned seen;          /* 1 << field given */
	int form_type_seen;
	const char *cond, *text;
};

static int muc_refuse(struct muc_submit *s, enum muc_verdict v,
		      const char *text)
{
	s->cond = v == MV_SYNTAX ? "bad-request" : v == MV_VALUE ?
		"not-acceptable" : "resource-constraint";
	s->text = v == MV_NOMEM ? "Out of memory" : text;
	return -1;
}

/* Why field kind k refuses a value (the <text/> of not-acceptable). */
static const char *muc_value_text(enum muc_kind k)
{
	switch (k) {
	case MK_TEXT:
	case MK_SECRET:
		return "The room name, description or password is longer "
		       "than the service allows";
	case MK_LANG:
		return "muc#roomconfig_lang is not a language tag";
	case MK_BOOL:
		return "A boolean field is not 0, 1, false or true";
	case MK_PM:
		return "muc#roomconfig_allowpm is not anyone, participants, "
		       "moderators or none";
	case MK_WHOIS:
		return "muc#roomconfig_whois is not moderators or anyone";
	case MK_MAX_USERS:
		return "muc#roomconfig_maxusers is not none or a number up "
		       "to the service's limit";
	case MK_ROLES:
		break;
	}
	return "A role list has a value that is not moderator, participant "
	       "or visitor";
}

/* The roles of a list-multi field: each <value/> a role. */
static int muc_submit_roles(struct muc_submit *s, struct muc_config *t,
			    enum muc_field f, const struct xml_node *field)
{
	unsigned mask = 0;
	for (const struct xml_node *v = xml_first_element(field); v != NULL;
	     v = xml_next_element(v)) {
		if (!xml_is(v, NS_XDATA, "value"))
			continue;
		const char *w = xml_text(s->a, v);
		if (w == NULL)
			return muc_refuse(s, MV_NOMEM, NULL);
		unsigned bit = muc_role_bit(w, strlen(w));
		if (bit == 0)
			return muc_refuse(s, MV_VALUE,
					  muc_value_text(MK_ROLES));
		mask |= bit;
	}
	*muc_roles_of(t, f) = mask;
	return 0;
}

/* The one value of a single-value field ("" when it has none: XEP-0004
 * section 3.3, a boolean without a value is false); NULL with the
 * refusal made when there are two, or out of memory. */
static const char *muc_submit_single(struct muc_submit *s,
				     const struct xml_node *field, int is_bool)
{
	const struct xml_node *one = NULL;
	for (const struct xml_node *v = xml_first_element(field); v != NULL;
	     v = xml_next_element(v)) {
		if (!xml_is(v, NS_XDATA, "value"))
			continue;
		if (one != NULL) {
			muc_refuse(s, MV_SYNTAX, "A single-value field has "
				   "more than one value");
			return NULL;
		}
		one = v;
	}
	if (one == NULL)
		return is_bool ? "0" : "";
	const char *text = xml_text(s->a, one);
	if (text == NULL)
		muc_refuse(s, MV_NOMEM, NULL);
	return text;
}

static int muc_submit_field(struct muc_submit *s, struct muc_config *t,
			    const struct xml_node *field)
{
	const char *var = xml_attr(field, "var");
	if (var == NULL)
		return 0;               /* fixed fields have none */
	if (strcmp(var, "FORM_TYPE") == 0) {
		const char *v = muc_submit_single(s, field, 0);
		if (v == NULL)
			return -1;
		if (s->form_type_seen || strcmp(v, NS_MUC_ROOMCONFIG) != 0)
			return muc_refuse(s, MV_SYNTAX, "FORM_TYPE is not "
					  NS_MUC_ROOMCONFIG);
		s->form_type_seen = 1;
		return 0;
	}
	enum muc_field f = 0;
	while (f < MF_COUNT && (muc_fields[f].var == NULL ||
				strcmp(muc_fields[f].var, var) != 0))
		f++;
	if (f == MF_COUNT)
		return 0;   /* roomowners, roomadmins, others: not ours */
	if (s->seen & (1u << f))
		return muc_refuse(s, MV_SYNTAX, "A field is given twice");
	s->seen |= 1u << f;
	enum muc_kind k = muc_fields[f].kind;
	if (k == MK_ROLES)
		return muc_submit_roles(s, t, f, field);
	const char *v = muc_submit_single(s, field, k == MK_BOOL);
	if (v == NULL)
		return -1;
	enum muc_verdict r = muc_set(t, s->cfg, f, v, 1);
	return r == MV_OK ? 0 : muc_refuse(s, r, muc_value_text(k));
}

/* The secret and the flag together.  A form that sets only the secret
 * (clients written for Prosody, which has no passwordprotectedroom
 * field) turns protection on with a secret and off with an empty one;
 * a room without protection keeps no secret (the owner unticked it). */
static int muc_submit_password(struct muc_submit *s, struct muc_config *t)
{
	if ((s->seen & (1u << MF_PASSWORD)) &&
	    !(s->seen & (1u << MF_PASSWORD_PROTECTED)))
		t->password_protected = t->password[0] != '\0';
	if (t->password_protected && t->password[0] == '\0')
		return muc_refuse(s, MV_VALUE, "A password-protected room "
				  "needs a password");
	if (!t->password_protected && t->password[0] != '\0')
		t->password[0] = '\0';
	return 0;
}

int muc_config_submit(struct muc_config *cf, const struct xml_node *x,
		      const struct config *cfg, const char **cond_r,
		      const char **text_r)
{
	struct arena a;
	struct muc_submit s = { .a = &a, .cfg = cfg };
	struct muc_config t = { 0 };
	const char *type = x != NULL ? xml_attr(x, "type") : NULL;
	int r = 0;

	*cond_r = *text_r = NULL;
	if (x == NULL || !xml_is(x, NS_XDATA, "x") || type == NULL ||
	    (strcmp(type, "submit") != 0 && strcmp(type, "cancel") != 0)) {
		*cond_r = "bad-request";
		*text_r = "Not a data form of type submit or cancel";
		return -1;
	}
	if (strcmp(type, "cancel") == 0)
		return 1;
	arena_init(&a, 1024);
	if (muc_config_copy(&t, cf) < 0)
		r = muc_refuse(&s, MV_NOMEM, NULL);
	for (const struct xml_node *f = xml_first_element(x);
	     r == 0 && f != NULL; f = xml_next_element(f))
		if (xml_is(f, NS_XDATA, "field"))
			r = muc_submit_field(&s, &t, f);
	if (r == 0)
		r = muc_submit_password(&s, &t);
	arena_free(&a);
	if (r < 0) {
		muc_config_free(&t);
		*cond_r = s.cond;
		*text_r = s.text;
		return -1;
	}
	muc_config_free(cf);
	*cf = t;
	return 0;
}

/* ---- changes ------------------------------------------------------------ */

unsigned muc_config_status_codes(const struct muc_config *old,
				 const struct muc_config *now,
				 unsigned *codes, unsigned max)
{
	unsigned all[MUC_CONFIG_STATUS_MAX], n = 0;
	/* 104 always: clients re-read the configuration on it, and any
	 * submitted form may have changed something they show */
	all[n++] = 104;
	if (old->whois_anyone != now->whois_anyone)
		all[n++] = now->whois_anyone ? 172 : 173;
	if (n > max)
		n = max;
	memcpy(codes, all, n * sizeof(*codes));
	return n;
}

/* ---- disco#info --------------------------------------------------------- */

static int muc_disco_feature(struct buf *out, const char *var)
{
	return buf_appendf(out, "<feature var='%s'/>", var);
}

static int muc_disco_field(struct buf *out, const char *var,
			   const char *type, const char *label,
			   const char *value)
{
	int r = buf_appendf(out, "<field var='%s' type='%s' label='%s'>",
			    var, type, label);
	r |= muc_form_value(out, value);
	return r | buf_appendf(out, "</field>");
}

static int muc_disco_features(const struct muc_config *cf, struct buf *out)
{
	int r = muc_disco_feature(out, "http://jabber.org/protocol/disco#info");
	r |= muc_disco_feature(out, NS_MUC);
	r |= muc_disco_feature(out, cf->public_list ? "muc_public"
						    : "muc_hidden");
	r |= muc_disco_feature(out, cf->persistent ? "muc_persistent"
						   : "muc_temporary");
	r |= muc_disco_feature(out, cf->members_only ? "muc_membersonly"
						     : "muc_open");
	r |= muc_disco_feature(out, cf->moderated ? "muc_moderated"
						  : "muc_unmoderated");
	r |= muc_disco_feature(out, cf->whois_anyone ? "muc_nonanonymous"
						     : "muc_semianonymous");
	r |= muc_disco_feature(out, cf->password_protected ?
			       "muc_passwordprotected" : "muc_unsecured");
	if (cf->logging) {
		/* the room's archive answers what personal ones do */
		r |= muc_disco_feature(out, "urn:xmpp:mam:2");
		r |= muc_disco_feature(out, "urn:xmpp:mam:2#extended");
		/* the room stamps stanza ids only on what it archives */
		r |= muc_disco_feature(out, "urn:xmpp:sid:0");
	}
	r |= muc_disco_feature(out, NS_OCCUPANT_ID);
	r |= muc_disco_feature(out, NS_MUC "#self-ping-optimization");
	r |= muc_disco_feature(out, NS_MUC "#stable_id");
	r |= muc_disco_feature(out, NS_MUC_REQUEST);
	return r;
}

/* The muc#roominfo form (XEP-0045 section 6.4 and 15.5.4).  Whether
 * occupants may change the subject goes out under both names clients
 * read: muc#roominfo_subjectmod (the XEP's registry) and
 * muc#roominfo_changesubject (what Prosody and ejabberd send). */
static int muc_disco_form(const struct muc_config *cf, const char *name,
			  const char *subject, unsigned occupants,
			  struct buf *out)
{
	const char *change = cf->change_subject ? "1" : "0";
	char num[16];
	snprintf(num, sizeof(num), "%u", occupants);
	int r = buf_appendf(out, "<x xmlns='" NS_XDATA "' type='result'>"
			    "<field var='FORM_TYPE' type='hidden'><value>"
			    NS_MUC_ROOMINFO "</value></field>");
	r |= muc_disco_field(out, "muc#roominfo_description", "text-single",
			     "Short Description of Room", cf->description);
	r |= muc_disco_field(out, "muc#roominfo_subject", "text-single",
			     "Current Discussion Topic",
			     subject != NULL ? subject : "");
	r |= muc_disco_field(out, "muc#roominfo_occupants", "text-single",
			     "Current Number of Occupants in Room", num);
	r |= muc_disco_field(out, "muc#roominfo_lang", "text-single",
			     "Natural Language for Room Discussions", cf->lang);
	r |= muc_disco_field(out, "muc#roomconfig_roomname", "text-single",
			     "Natural-Language Room Name", name);
	r |= muc_disco_field(out, "muc#roominfo_changesubject", "boolean",
			     "Occupants May Change the Subject", change);
	r |= muc_disco_field(out, "muc#roominfo_subjectmod", "boolean",
			     "Occupants May Change the Subject", change);
	return r | buf_appendf(out, "</x>");
}

void muc_config_disco_info(const struct muc_config *cf,
			   const char *room_name_fallback, const char *subject,
			   unsigned occupants, struct buf *out)
{
	size_t start = out->len;
	const char *name = cf->name != NULL && cf->name[0] != '\0' ? cf->name :
		room_name_fallback != NULL ? room_name_fallback : "";
	int r = buf_appendf(out, "<identity category='conference' type='text'");
	if (name[0] != '\0') {
		r |= buf_appendf(out, " name='");
		r |= xml_escape(out, name, strlen(name), 1);
		r |= buf_appendf(out, "'");
	}
	r |= buf_appendf(out, "/>");
	r |= muc_disco_features(cf, out);
	r |= muc_disco_form(cf, name, subject, occupants, out);
	if (r < 0)
		out->len = start;
}
