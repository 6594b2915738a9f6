/*
 * test_muc_form.c - a room's configuration (worker/muc_form.c): the
 * owner's muc#roomconfig form read back by submitting it (defaults and
 * a changed room, text needing escapes), partial and instant-room
 * submissions, every refusal with its condition and the room left as
 * it was, the secret and its flag, the stored text and its tolerance of
 * garbage, the status codes of a change, and the disco#info features
 * and muc#roominfo form per configuration.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "arena.h"
#include "buf.h"
#include "config.h"
#include "log.h"
#include "worker/muc.h"
#include "worker/xml.h"

static struct arena arena;
static struct config *cfg;

static void setup(void)
{
	const char *error = NULL;
	log_init("test");
	log_set_level(LOG_LEVEL_FATAL);
	arena_init(&arena, 4096);
	cfg = config_new();
	cr_assert_not_null(cfg);
	/* a limit that is not a step of the maxusers list */
	cr_assert_eq(config_set(cfg, "muc.max_occupants=75", &error), 0,
		     "%s", error);
	cr_assert_eq(config_set(cfg, "muc.max_subject_bytes=64", &error), 0,
		     "%s", error);
}

static void teardown(void)
{
	config_free(&cfg);
	arena_free(&arena);
}

TestSuite(muc_form, .init = setup, .fini = teardown);

static struct xml_node *parse(const char *text, size_t len)
{
	const char *error;
	struct xml_node *n = xml_parse(&arena, text, len, &error);
	cr_assert_not_null(n, "not well-formed (%s): %.*s", error, (int)len,
			   text);
	return n;
}

/* cf's stored text (its canonical form: equal configurations, equal
 * texts), in the arena. */
static const char *text_of(const struct muc_config *cf)
{
	struct buf b;
	buf_init(&b, 0);
	cr_assert_eq(muc_config_to_text(cf, &b), 0);
	char *s = arena_strndup(&arena, buf_head(&b), buf_used(&b));
	buf_free(&b);
	return s;
}

static void fresh(struct muc_config *cf)
{
	cr_assert_eq(muc_config_default(cf, cfg), 0);
}

/* The form of cf, parsed. */
static struct xml_node *form_of(const struct muc_config *cf)
{
	struct buf b;
	buf_init(&b, 0);
	muc_config_form(cf, cfg, &b);
	cr_assert_gt(buf_used(&b), 0);
	struct xml_node *x = parse(buf_head(&b), buf_used(&b));
	buf_free(&b);
	return x;
}

/* Submit fields (the inside of an <x type='submit'/>) to cf. */
static int submit(struct muc_config *cf, const char *fields,
		  const char **cond, const char **text)
{
	struct buf b;
	buf_init(&b, 0);
	buf_appendf(&b, "<x xmlns='jabber:x:data' type='submit'>%s</x>",
		    fields);
	struct xml_node *x = parse(buf_head(&b), buf_used(&b));
	buf_free(&b);
	return muc_config_submit(cf, x, cfg, cond, text);
}

static const struct xml_node *field(const struct xml_node *x, const char *var)
{
	for (const struct xml_node *f = xml_first_element(x); f != NULL;
	     f = xml_next_element(f)) {
		const char *v = xml_attr(f, "var");
		if (v != NULL && strcmp(v, var) == 0)
			return f;
	}
	return NULL;
}

/* The values of a field, space-separated; its options after a '|'. */
static const char *values(const struct xml_node *x, const char *var)
{
	const struct xml_node *f = field(x, var);
	cr_assert_not_null(f, "no field %s", var);
	struct buf b;
	buf_init(&b, 0);
	for (const struct xml_node *v = xml_first_element(f); v != NULL;
	     v = xml_next_element(v))
		if (xml_is(v, "jabber:x:data", "value"))
			buf_appendf(&b, "%s%s", buf_used(&b) ? " " : "",
				    xml_text(&arena, v));
	int first = 1;
	for (const struct xml_node *o = xml_first_element(f); o != NULL;
	     o = xml_next_element(o))
		if (xml_is(o, "jabber:x:data", "option")) {
			buf_appendf(&b, "%s%s", first ? "|" : " ",
				    xml_text(&arena, xml_first_element(o)));
			first = 0;
		}
	buf_append(&b, "", 1);
	char *s = arena_strdup(&arena, buf_head(&b));
	buf_free(&b);
	return s;
}

/* Submit the form of from, as a client that changes nothing, to into. */
static void round_trip(const struct muc_config *from, struct muc_config *into)
{
	struct xml_node *x = form_of(from);
	const char *cond, *text;
	cr_assert_eq(xml_set_attr(&arena, x, "type", "submit"), 0);
	cr_assert_eq(muc_config_submit(into, x, cfg, &cond, &text), 0,
		     "%s: %s", cond, text);
	cr_assert_str_eq(text_of(into), text_of(from));
}

/* A room with every field away from its default, and text to escape. */
static void changed(struct muc_config *cf)
{
	const char *cond, *text;
	fresh(cf);
	cr_assert_eq(submit(cf,
		"<field var='muc#roomconfig_roomname'><value>A &lt;Dark&gt; "
		"&amp; 'Cave' \"x\"</value></field>"
		"<field var='muc#roomconfig_roomdesc'><value>line1\nline2\\"
		"</value></field>"
		"<field var='muc#roomconfig_lang'><value>en-GB</value></field>"
		"<field var='muc#roomconfig_enablearchiving'><value>0</value>"
		"</field>"
		"<field var='muc#roomconfig_changesubject'><value>true</value>"
		"</field>"
		"<field var='muc#roomconfig_allowinvites'><value>1</value>"
		"</field>"
		"<field var='muc#roomconfig_allowpm'><value>moderators</value>"
		"</field>"
		"<field var='muc#roomconfig_maxusers'><value>42</value></field>"
		"<field var='muc#roomconfig_presencebroadcast'><value>moderator"
		"</value></field>"
		"<field var='muc#roomconfig_getmemberlist'><value>visitor"
		"</value><value>moderator</value></field>"
		"<field var='muc#roomconfig_publicroom'><value>0</value></field>"
		"<field var='muc#roomconfig_persistentroom'><value>1</value>"
		"</field>"
		"<field var='muc#roomconfig_moderatedroom'><value>1</value>"
		"</field>"
		"<field var='muc#roomconfig_membersonly'><value>1</value>"
		"</field>"
		"<field var='muc#roomconfig_passwordprotectedroom'><value>1"
		"</value></field>"
		"<field var='muc#roomconfig_roomsecret'><value>caul&amp;dron"
		"</value></field>"
		"<field var='muc#roomconfig_whois'><value>anyone</value>"
		"</field>", &cond, &text), 0, "%s: %s", cond, text);
}

Test(muc_form, changed_room_applies_every_field)
{
	struct muc_config cf;
	changed(&cf);
	cr_assert_str_eq(cf.name, "A <Dark> & 'Cave' \"x\"");
	cr_assert_str_eq(cf.description, "line1\nline2\\");
	cr_assert_str_eq(cf.lang, "en-GB");
	cr_assert_eq(cf.logging, 0);
	cr_assert_eq(cf.change_subject, 1);
	cr_assert_eq(cf.allow_invites, 1);
	cr_assert_eq(cf.allow_pm, MUC_PM_MODERATORS);
	cr_assert_eq(cf.max_users, 42);
	cr_assert_eq(cf.presence_broadcast, MUC_ROLES_MODERATOR);
	cr_assert_eq(cf.get_member_list, MUC_ROLES_VISITOR |
		     MUC_ROLES_MODERATOR);
	cr_assert_eq(cf.public_list, 0);
	cr_assert_eq(cf.persistent, 1);
	cr_assert_eq(cf.moderated, 1);
	cr_assert_eq(cf.members_only, 1);
	cr_assert_eq(cf.password_protected, 1);
	cr_assert_str_eq(cf.password, "caul&dron");
	cr_assert_eq(cf.whois_anyone, 1);
	muc_config_free(&cf);
}

Test(muc_form, form_submitted_back_is_the_same_room)
{
	struct muc_config a, b;
	fresh(&a);
	fresh(&b);
	round_trip(&a, &b);             /* defaults */
	muc_config_free(&a);
	changed(&a);
	round_trip(&a, &b);             /* every field changed, escapes */
	cr_assert_str_eq(b.name, "A <Dark> & 'Cave' \"x\"");
	muc_config_free(&b);
	fresh(&b);
	round_trip(&b, &a);             /* and back to the defaults */
	muc_config_free(&a);
	muc_config_free(&b);
}

Test(muc_form, form_fields_labels_and_options)
{
	struct muc_config cf;
	fresh(&cf);
	struct xml_node *x = form_of(&cf);
	cr_assert_str_eq(xml_attr(x, "type"), "form");
	cr_assert_str_eq(values(x, "FORM_TYPE"),
			 "http://jabber.org/protocol/muc#roomconfig");
	cr_assert_str_eq(xml_attr(field(x, "muc#roomconfig_roomname"),
				  "label"), "Natural-Language Room Name");
	cr_assert_str_eq(xml_attr(field(x, "muc#roomconfig_roomsecret"),
				  "type"), "text-private");
	cr_assert_str_eq(values(x, "muc#roomconfig_allowpm"),
			 "anyone|anyone participants moderators none");
	cr_assert_str_eq(values(x, "muc#roomconfig_whois"),
			 "moderators|moderators anyone");
	cr_assert_str_eq(values(x, "muc#roomconfig_presencebroadcast"),
			 "moderator participant visitor|moderator participant "
			 "visitor");
	cr_assert_str_eq(values(x, "muc#roomconfig_getmemberlist"),
			 "moderator participant|moderator participant visitor");
	cr_assert_str_eq(values(x, "muc#roomconfig_enablearchiving"), "1");
	cr_assert_str_eq(values(x, "muc#roomconfig_publicroom"), "1");
	cr_assert_str_eq(values(x, "muc#roomconfig_persistentroom"), "0");
	/* up to muc.max_occupants (75), which is offered itself */
	cr_assert_str_eq(values(x, "muc#roomconfig_maxusers"),
			 "none|10 20 30 50 75 none");
	/* not offered: affiliations are changed with muc#admin */
	cr_assert_null(field(x, "muc#roomconfig_roomowners"));
	cr_assert_null(field(x, "muc#roomconfig_roomadmins"));
	unsigned n = 0;
	for (const struct xml_node *f = xml_first_element(x); f != NULL;
	     f = xml_next_element(f))
		n += xml_is(f, "jabber:x:data", "field");
	cr_assert_eq(n, 18, "FORM_TYPE and the 17 fields, got %u", n);
	muc_config_free(&cf);
	/* a room's own maxusers between two steps is among the options */
	changed(&cf);
	cr_assert_str_eq(values(form_of(&cf), "muc#roomconfig_maxusers"),
			 "42|10 20 30 42 50 75 none");
	muc_config_free(&cf);
}

Test(muc_form, partial_and_instant_submissions)
{
	struct muc_config cf;
	const char *cond, *text;
	changed(&cf);
	const char *before = text_of(&cf);
	/* instant room (section 10.1.2): nothing changes */
	cr_assert_eq(submit(&cf, "", &cond, &text), 0);
	cr_assert_str_eq(text_of(&cf), before);
	/* one field: only it changes; unknown fields are ignored */
	cr_assert_eq(submit(&cf, "<field var='FORM_TYPE'><value>"
			    "http://jabber.org/protocol/muc#roomconfig</value>"
			    "</field><field var='muc#roomconfig_roomname'>"
			    "<value>Renamed</value></field>"
			    "<field var='muc#roomconfig_roomadmins'><value>"
			    "a@b</value></field><field var='x-unknown'>"
			    "<value>?</value></field><field type='fixed'>"
			    "<value>note</value></field>", &cond, &text), 0);
	cr_assert_str_eq(cf.name, "Renamed");
	cr_assert_eq(cf.max_users, 42);
	cr_assert_eq(cf.whois_anyone, 1);
	/* a boolean without a value is false (XEP-0004 section 3.3), a
	 * list-multi without values empty */
	cr_assert_eq(submit(&cf, "<field var='muc#roomconfig_moderatedroom'/>"
			    "<field var='muc#roomconfig_presencebroadcast'/>",
			    &cond, &text), 0);
	cr_assert_eq(cf.moderated, 0);
	cr_assert_eq(cf.presence_broadcast, 0);
	/* maxusers none is the service's limit */
	cr_assert_eq(submit(&cf, "<field var='muc#roomconfig_maxusers'><value>"
			    "none</value></field>", &cond, &text), 0);
	cr_assert_eq(cf.max_users, 0);
	cr_assert_eq(submit(&cf, "<field var='muc#roomconfig_maxusers'><value>"
			    "75</value></field>", &cond, &text), 0);
	cr_assert_eq(cf.max_users, 75);
	/* cancel: 1, nothing changes */
	before = text_of(&cf);
	static const char cancel[] = "<x xmlns='jabber:x:data' "
		"type='cancel'><field var='muc#roomconfig_roomname'><value>"
		"no</value></field></x>";
	struct xml_node *x = parse(cancel, strlen(cancel));
	cr_assert_eq(muc_config_submit(&cf, x, cfg, &cond, &text), 1);
	cr_assert_str_eq(text_of(&cf), before);
	muc_config_free(&cf);
}

Test(muc_form, secret_and_its_flag)
{
	struct muc_config cf;
	const char *cond, *text;
	fresh(&cf);
	/* a client for Prosody sends only the secret: protection follows */
	cr_assert_eq(submit(&cf, "<field var='muc#roomconfig_roomsecret'>"
			    "<value>s3</value></field>", &cond, &text), 0);
	cr_assert_eq(cf.password_protected, 1);
	cr_assert_str_eq(cf.password, "s3");
	cr_assert_eq(submit(&cf, "<field var='muc#roomconfig_roomsecret'/>",
			    &cond, &text), 0);
	cr_assert_eq(cf.password_protected, 0);
	/* the flag given keeps the secret it had */
	cr_assert_eq(submit(&cf, "<field var='muc#roomconfig_roomsecret'>"
			    "<value>s3</value></field>", &cond, &text), 0);
	cr_assert_eq(submit(&cf, "<field var='muc#roomconfig_"
			    "passwordprotectedroom'><value>1</value></field>",
			    &cond, &text), 0);
	cr_assert_str_eq(cf.password, "s3");
	/* unticked: the secret goes (a room that asks none keeps none) */
	cr_assert_eq(submit(&cf, "<field var='muc#roomconfig_"
			    "passwordprotectedroom'><value>0</value></field>",
			    &cond, &text), 0);
	cr_assert_eq(cf.password_protected, 0);
	cr_assert_str_eq(cf.password, "");
	muc_config_free(&cf);
}

/* fields refused with cond; the room stays as it was. */
static void refused(const char *fields, const char *want)
{
	struct muc_config cf;
	const char *cond = NULL, *text = NULL;
	changed(&cf);
	const char *before = text_of(&cf);
	cr_assert_eq(submit(&cf, fields, &cond, &text), -1, "accepted: %s",
		     fields);
	cr_assert_str_eq(cond, want, "%s", fields);
	cr_assert_not_null(text);
	cr_assert_gt(strlen(text), 0);
	cr_assert_str_eq(text_of(&cf), before, "changed by: %s", fields);
	muc_config_free(&cf);
}

#define F(var, v) "<field var='muc#roomconfig_" var "'><value>" v \
	"</value></field>"
/* a good field first: a refusal later must undo it */
#define GOOD F("roomname", "Changed")

Test(muc_form, refusals_leave_the_room_unchanged)
{
	refused(GOOD "<field var='FORM_TYPE'><value>urn:other</value></field>",
		"bad-request");
	refused(GOOD "<field var='FORM_TYPE'><value>http://jabber.org/protocol/"
		"muc#roomconfig</value></field><field var='FORM_TYPE'><value>"
		"http://jabber.org/protocol/muc#roomconfig</value></field>",
		"bad-request");
	refused(GOOD F("moderatedroom", "yes"), "bad-request");
	refused(GOOD F("moderatedroom", "") , "bad-request");
	refused(GOOD "<field var='muc#roomconfig_moderatedroom'><value>1"
		"</value><value>0</value></field>", "bad-request");
	refused(GOOD F("roomdesc", "a") F("roomdesc", "b"), "bad-request");
	refused(GOOD F("allowpm", "everyone"), "not-acceptable");
	refused(GOOD F("whois", "none"), "not-acceptable");
	refused(GOOD F("maxusers", "76"), "not-acceptable");
	refused(GOOD F("maxusers", "0"), "not-acceptable");
	refused(GOOD F("maxusers", "-5"), "not-acceptable");
	refused(GOOD F("maxusers", "4294967297"), "not-acceptable");
	refused(GOOD F("maxusers", ""), "not-acceptable");
	refused(GOOD F("presencebroadcast", "owner"), "not-acceptable");
	refused(GOOD "<field var='muc#roomconfig_getmemberlist'><value>"
		"moderator</value><value>member</value></field>",
		"not-acceptable");
	refused(GOOD F("roomsecret", "") F("passwordprotectedroom", "1"),
		"not-acceptable");
	refused(GOOD F("lang", "en_US"), "not-acceptable");
	refused(GOOD F("lang", "-en"), "not-acceptable");
	/* muc.max_subject_bytes is 64 here */
	refused(F("roomname", "0123456789012345678901234567890123456789"
		  "012345678901234567890123X"), "not-acceptable");
	refused(GOOD F("roomdesc", "0123456789012345678901234567890123456789"
		       "012345678901234567890123X"), "not-acceptable");
}

Test(muc_form, refusals_of_the_form_itself)
{
	struct muc_config cf;
	const char *cond, *text;
	fresh(&cf);
	const char *before = text_of(&cf);
	const char *bad[] = {
		"<x xmlns='jabber:x:data' type='form'/>",
		"<x xmlns='jabber:x:data' type='result'/>",
		"<x xmlns='jabber:x:data'/>",
		"<x xmlns='urn:other' type='submit'/>",
		"<query xmlns='jabber:x:data' type='submit'/>",
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct xml_node *x = parse(bad[i], strlen(bad[i]));
		cr_assert_eq(muc_config_submit(&cf, x, cfg, &cond, &text), -1,
			     "%s", bad[i]);
		cr_assert_str_eq(cond, "bad-request");
	}
	cr_assert_eq(muc_config_submit(&cf, NULL, cfg, &cond, &text), -1);
	cr_assert_str_eq(text_of(&cf), before);
	muc_config_free(&cf);
}

Test(muc_form, a_longest_name_is_accepted)
{
	struct muc_config cf;
	const char *cond, *text;
	fresh(&cf);
	cr_assert_eq(submit(&cf, F("roomname", "0123456789012345678901234567"
				   "890123456789012345678901234567890123"),
			    &cond, &text), 0, "%s", text);
	cr_assert_eq(strlen(cf.name), 64);
	muc_config_free(&cf);
}

Test(muc_form, stored_text_round_trip)
{
	struct muc_config a, b = { 0 };
	changed(&a);
	const char *t = text_of(&a);
	/* one line per key, the newline and backslash escaped */
	cr_assert_not_null(strstr(t, "\ndescription=line1\\nline2\\\\\n"));
	cr_assert_not_null(strstr(t, "\nget_member_list=moderator,visitor\n"));
	cr_assert_eq(muc_config_from_text(&b, cfg, t, strlen(t)), 0);
	cr_assert_str_eq(text_of(&b), t);
	cr_assert_str_eq(b.description, "line1\nline2\\");
	cr_assert_str_eq(b.password, "caul&dron");
	/* into a room that has a configuration: replaced (that its
	 * strings are freed, fuzz/replay_muc_config's leak check sees) */
	cr_assert_eq(muc_config_from_text(&a, cfg, "name=Other\n", 11), 0);
	cr_assert_str_eq(a.name, "Other");
	cr_assert_eq(a.max_users, 0);
	muc_config_free(&b);
	muc_config_free(&a);
	/* and the defaults, from nothing at all */
	fresh(&a);
	cr_assert_eq(muc_config_from_text(&b, cfg, "", 0), 0);
	cr_assert_str_eq(text_of(&b), text_of(&a));
	/* the service's limit is stored as the word the parser reads back
	 * (a room reread after a move or a restart kept logging "0" as out
	 * of range) */
	cr_assert_not_null(strstr(text_of(&a), "\nmax_users=none\n"));
	muc_config_free(&a);
	muc_config_free(&b);
}

Test(muc_form, stored_text_garbage_gets_defaults)
{
	struct muc_config def, cf = { 0 };
	fresh(&def);
	static const char junk[] =
		"name=Kept\n"
		"no equals sign\n"
		"future_key=whatever\n"
		"=\n"
		"max_users=76\n"               /* above muc.max_occupants */
		"persistent=maybe\n"
		"allow_pm=everyone\n"
		"whois=none\n"
		"presence_broadcast=moderator,owner\n"
		"get_member_list=visitor,\n"
		"lang=en_US\n"
		"description=bad\\qescape\n"
		"password=lone\\\n"
		"moderated=1\n"
		"members_only=1\r\n"           /* CR: not a boolean */
		"\xff\xfe\n"
		"description=\xc3\x28\n"       /* not UTF-8 */
		"name=bell\a\n"                /* no C0 control in XML */
		"name=\xef\xbf\xbf\n"           /* nor U+FFFF */
		"public=0";                    /* no newline at the end */
	cr_assert_eq(muc_config_from_text(&cf, cfg, junk, sizeof(junk) - 1), 0);
	cr_assert_str_eq(cf.name, "Kept");
	cr_assert_eq(cf.moderated, 1);
	cr_assert_eq(cf.public_list, 0);
	cr_assert_eq(cf.max_users, def.max_users);
	cr_assert_eq(cf.persistent, def.persistent);
	cr_assert_eq(cf.allow_pm, def.allow_pm);
	cr_assert_eq(cf.whois_anyone, def.whois_anyone);
	cr_assert_eq(cf.presence_broadcast, def.presence_broadcast);
	cr_assert_eq(cf.get_member_list, def.get_member_list);
	cr_assert_eq(cf.members_only, def.members_only);
	cr_assert_str_eq(cf.lang, "");
	cr_assert_str_eq(cf.description, "");
	cr_assert_str_eq(cf.password, "");
	muc_config_free(&cf);
	/* a NUL inside a value: that value is refused, the rest read */
	static const char nul[] = "name=a\0b\npersistent=1\n";
	cr_assert_eq(muc_config_from_text(&cf, cfg, nul, sizeof(nul) - 1), 0);
	cr_assert_str_eq(cf.name, "");
	cr_assert_eq(cf.persistent, 1);
	muc_config_free(&cf);
	/* a stored name longer than muc.max_subject_bytes now is kept */
	static const char longname[] = "name=0123456789012345678901234567890"
		"1234567890123456789012345678901234567890123456789\n";
	cr_assert_eq(muc_config_from_text(&cf, cfg, longname,
					  sizeof(longname) - 1), 0);
	cr_assert_eq(strlen(cf.name), 80);
	/* and its form submitted back unchanged is accepted, a change to
	 * another name as long is not */
	struct muc_config back = { 0 };
	cr_assert_eq(muc_config_copy(&back, &cf), 0);
	round_trip(&cf, &back);
	muc_config_free(&back);
	const char *cond, *text;
	cr_assert_eq(submit(&cf, F("roomname", "1123456789012345678901234567"
		"8901234567890123456789012345678901234567890123456789"),
		&cond, &text), -1);
	cr_assert_str_eq(cond, "not-acceptable");
	muc_config_free(&cf);
	/* a secret without its flag, or the flag without a secret: an
	 * unprotected room without a secret (what a submission keeps) */
	static const char half1[] = "password=x\n", half2[] =
		"password_protected=1\n";
	cr_assert_eq(muc_config_from_text(&cf, cfg, half1, sizeof(half1) - 1),
		     0);
	cr_assert_eq(cf.password_protected, 0);
	cr_assert_str_eq(cf.password, "");
	muc_config_free(&cf);
	cr_assert_eq(muc_config_from_text(&cf, cfg, half2, sizeof(half2) - 1),
		     0);
	cr_assert_eq(cf.password_protected, 0);
	muc_config_free(&cf);
	muc_config_free(&def);
}

static const char *codes(const struct muc_config *a,
			 const struct muc_config *b, unsigned max)
{
	unsigned c[MUC_CONFIG_STATUS_MAX + 2];
	unsigned n = muc_config_status_codes(a, b, c, max);
	cr_assert_leq(n, max);
	struct buf out;
	buf_init(&out, 0);
	for (unsigned i = 0; i < n; i++)
		buf_appendf(&out, "%s%u", i ? " " : "", c[i]);
	buf_append(&out, "", 1);
	char *s = arena_strdup(&arena, buf_head(&out));
	buf_free(&out);
	return s;
}

Test(muc_form, status_codes_of_a_change)
{
	struct muc_config a, b;
	fresh(&a);
	fresh(&b);
	cr_assert_str_eq(codes(&a, &b, 8), "104");
	/* the archive is not XEP-0045's public logging: no 170/171 */
	b.logging = 0;
	cr_assert_str_eq(codes(&a, &b, 8), "104");
	b.whois_anyone = 1;
	cr_assert_str_eq(codes(&a, &b, 8), "104 172");
	cr_assert_str_eq(codes(&b, &a, 8), "104 173");
	cr_assert_str_eq(codes(&b, &a, 1), "104");
	cr_assert_str_eq(codes(&b, &a, 0), "");
	/* changes that are not about privacy: 104 only */
	a.members_only = 1;
	a.moderated = 1;
	a.max_users = 9;
	cr_assert_str_eq(codes(&b, &a, 8), "104 173");
	muc_config_free(&a);
	muc_config_free(&b);
}

/* The disco#info content of cf, parsed inside a <query/>. */
static struct xml_node *disco(const struct muc_config *cf, const char *fb,
			      const char *subject, unsigned occupants)
{
	struct buf b;
	buf_init(&b, 0);
	buf_appendf(&b, "<query xmlns='http://jabber.org/protocol/disco#info'>");
	muc_config_disco_info(cf, fb, subject, occupants, &b);
	buf_appendf(&b, "</query>");
	struct xml_node *q = parse(buf_head(&b), buf_used(&b));
	buf_free(&b);
	return q;
}

static const char *features(const struct xml_node *q)
{
	struct buf b;
	buf_init(&b, 0);
	for (const struct xml_node *f = xml_first_element(q); f != NULL;
	     f = xml_next_element(f))
		if (xml_is(f, "http://jabber.org/protocol/disco#info",
			   "feature"))
			buf_appendf(&b, "%s%s", buf_used(&b) ? " " : "",
				    xml_attr(f, "var"));
	buf_append(&b, "", 1);
	char *s = arena_strdup(&arena, buf_head(&b));
	buf_free(&b);
	return s;
}

#define COMMON_TAIL "urn:xmpp:occupant-id:0 " \
	"http://jabber.org/protocol/muc#self-ping-optimization " \
	"http://jabber.org/protocol/muc#stable_id " \
	"http://jabber.org/protocol/muc#request"

Test(muc_form, disco_features_per_configuration)
{
	struct muc_config cf;
	fresh(&cf);
	cr_assert_str_eq(features(disco(&cf, "room", NULL, 0)),
		"http://jabber.org/protocol/disco#info "
		"http://jabber.org/protocol/muc muc_public muc_temporary "
		"muc_open muc_unmoderated muc_semianonymous muc_unsecured "
		"urn:xmpp:mam:2 urn:xmpp:mam:2#extended urn:xmpp:sid:0 "
		COMMON_TAIL);
	muc_config_free(&cf);
	changed(&cf);
	cr_assert_str_eq(features(disco(&cf, "room", NULL, 0)),
		"http://jabber.org/protocol/disco#info "
		"http://jabber.org/protocol/muc muc_hidden muc_persistent "
		"muc_membersonly muc_moderated muc_nonanonymous "
		"muc_passwordprotected " COMMON_TAIL);  /* no archive: no ids */
	muc_config_free(&cf);
}

Test(muc_form, disco_identity_and_roominfo)
{
	struct muc_config cf;
	fresh(&cf);
	/* no name: the fallback (the room's localpart), escaped */
	struct xml_node *q = disco(&cf, "r<&'\"", "Spells & <potions>", 7);
	struct xml_node *id = xml_child(q, NULL, "identity");
	cr_assert_str_eq(xml_attr(id, "category"), "conference");
	cr_assert_str_eq(xml_attr(id, "type"), "text");
	cr_assert_str_eq(xml_attr(id, "name"), "r<&'\"");
	struct xml_node *x = xml_child(q, "jabber:x:data", "x");
	cr_assert_not_null(x);
	cr_assert_str_eq(xml_attr(x, "type"), "result");
	cr_assert_str_eq(values(x, "FORM_TYPE"),
			 "http://jabber.org/protocol/muc#roominfo");
	cr_assert_str_eq(values(x, "muc#roominfo_subject"),
			 "Spells & <potions>");
	cr_assert_str_eq(values(x, "muc#roominfo_occupants"), "7");
	cr_assert_str_eq(values(x, "muc#roomconfig_roomname"), "r<&'\"");
	cr_assert_str_eq(values(x, "muc#roominfo_changesubject"), "0");
	cr_assert_str_eq(values(x, "muc#roominfo_subjectmod"), "0");
	muc_config_free(&cf);
	changed(&cf);
	q = disco(&cf, "fallback", NULL, 0);
	cr_assert_str_eq(xml_attr(xml_child(q, NULL, "identity"), "name"),
			 "A <Dark> & 'Cave' \"x\"");
	x = xml_child(q, "jabber:x:data", "x");
	cr_assert_str_eq(values(x, "muc#roominfo_description"),
			 "line1\nline2\\");
	cr_assert_str_eq(values(x, "muc#roominfo_lang"), "en-GB");
	cr_assert_str_eq(values(x, "muc#roominfo_subject"), "");
	cr_assert_str_eq(values(x, "muc#roominfo_changesubject"), "1");
	/* the password never shows */
	struct buf b;
	buf_init(&b, 0);
	muc_config_disco_info(&cf, NULL, NULL, 0, &b);
	buf_append(&b, "", 1);
	cr_assert_null(strstr(buf_head(&b), "dron"));
	buf_free(&b);
	/* no name and no fallback: an identity without one */
	muc_config_free(&cf);
	fresh(&cf);
	q = disco(&cf, NULL, NULL, 0);
	cr_assert_null(xml_attr(xml_child(q, NULL, "identity"), "name"));
	muc_config_free(&cf);
}

Test(muc_form, renderers_leave_nothing_half_written)
{
	struct muc_config cf;
	changed(&cf);
	struct buf b;
	buf_init(&b, 600);              /* too small for either */
	buf_append(&b, "keep", 4);
	muc_config_form(&cf, cfg, &b);
	cr_assert_eq(buf_used(&b), 4);
	muc_config_disco_info(&cf, NULL, "s", 1, &b);
	cr_assert_eq(buf_used(&b), 4);
	buf_free(&b);
	buf_init(&b, 64);
	cr_assert_eq(muc_config_to_text(&cf, &b), -1);
	cr_assert_eq(buf_used(&b), 0);
	buf_free(&b);
	muc_config_free(&cf);
}
